"""Shared fixtures: one fresh database per test session, one in-process app per strategy."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import httpx
import pytest

from racebench.harness.database import connect, parse_url, provision
from racebench.harness.gateway import Gateway
from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings
from racebench.reference_service.service import Service
from racebench.reference_service.strategies import STRATEGY_NAMES

ClientFactory = Callable[[str], Awaitable[httpx.AsyncClient]]

# A suite started in the background of a non-interactive shell (`.ci/run &`, nohup) inherits
# SIGINT ignored, and so would every command it starts: the tests that Ctrl-C a command would
# wait for nothing. Handled here, SIGINT is back to its default in every child (exec resets a
# handled signal, not an ignored one).
signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="session")
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for looking at what the service wrote."""
    conn = await connect(parse_url(database_url))
    yield conn
    await conn.close()


async def new_payment(
    client: httpx.AsyncClient, amount: int = 100_000, **extra: object
) -> dict[str, object]:
    response = await client.post("/payments", json={"amount": amount, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def effects(sql: asyncpg.Connection, payment_id: int) -> dict[str, int]:
    """How many allocations, receipts and captured events a payment has."""
    row = await sql.fetchrow(
        """
        SELECT (SELECT count(*) FROM payment_allocations WHERE payment_id = $1) AS allocations,
               (SELECT count(*) FROM receipts WHERE payment_id = $1) AS receipts,
               (SELECT count(*) FROM payment_events
                 WHERE payment_id = $1 AND to_status = 'captured') AS captured_events
        """,
        payment_id,
    )
    return dict(row)
