"""Shared fixtures: one fresh database per test session, one in-process app per strategy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest

from harness.database import provision
from harness.gateway import Gateway
from reference_service.app import create_app
from reference_service.config import Settings
from reference_service.service import Service
from reference_service.strategies import STRATEGY_NAMES

ClientFactory = Callable[[str], Awaitable[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with provision() as db:
        yield db.url


@pytest.fixture(scope="session")
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture(scope="session")
async def client_for(database_url: str) -> AsyncIterator[ClientFactory]:
    """`await client_for("for_update")`: an httpx client on the in-process app (cached)."""
    opened: dict[str, tuple[httpx.AsyncClient, Service]] = {}

    async def get(strategy: str) -> httpx.AsyncClient:
        if strategy not in opened:
            app = create_app(Settings(database_url=database_url, lock_strategy=strategy))
            service: Service = app.state.service
            await service.start()
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
            )
            opened[strategy] = (client, service)
        return opened[strategy][0]

    yield get
    for client, service in opened.values():
        await client.aclose()
        await service.stop()


@pytest.fixture(params=STRATEGY_NAMES)
async def client(request: pytest.FixtureRequest, client_for: ClientFactory) -> httpx.AsyncClient:
    """The in-process app, once for every lock strategy."""
    return await client_for(request.param)
