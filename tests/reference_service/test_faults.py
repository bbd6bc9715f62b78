"""Database faults and overload answer 503 with Retry-After, never a 500, and the service
recovers; health and unrelated reads stay responsive while one payment is locked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings


def assert_unavailable(response: httpx.Response, code: str = "database_unavailable") -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == code


@pytest.fixture
async def unreachable() -> AsyncIterator[httpx.AsyncClient]:
    """The service with a database nobody listens for (port 1 refuses at once)."""
    app = create_app(
        Settings(database_url="postgresql://postgres@127.0.0.1:1/none", create_tables=False)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
    ) as client:
        yield client
    await app.state.service.stop()


async def test_degraded_health_says_when_to_retry(unreachable: httpx.AsyncClient) -> None:
    response = await unreachable.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["database"] == "unavailable"


async def test_unreachable_database_is_503(unreachable: httpx.AsyncClient) -> None:
    assert_unavailable(await unreachable.get("/payments/1"))
    assert_unavailable(await unreachable.post("/payments", json={"amount": 100}))
