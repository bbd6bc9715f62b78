"""Strategy registry, statements per capture, and timeouts that turn into 503s."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from racebench.harness.database import parse_url
from racebench.harness.gateway import Gateway
from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings
from racebench.reference_service.service import Service
from racebench.reference_service.strategies import STRATEGY_NAMES, UnknownStrategy, get_strategy
from tests.conftest import ClientFactory, effects, new_payment

# The webhook path adds one: the statement that claims the event id and finds the payment.
WEBHOOK_EXTRA_STATEMENTS = 1


CONTRACT_NAMES = (
    "none",
    "for_update",
    "conditional_update",
    "optimistic",
    "advisory",
    "serializable",
    "app_lock",
)


def test_the_registry_has_the_seven_contract_names() -> None:
    """The contract's strategies come first, in its order; a new one goes after them."""
    assert STRATEGY_NAMES[: len(CONTRACT_NAMES)] == CONTRACT_NAMES
    for name in STRATEGY_NAMES:
        strategy = get_strategy(name)
        assert strategy.name == name
        assert strategy.summary and strategy.statements_per_capture >= 1


def test_an_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownStrategy) as error:
        get_strategy("optimistc")
    message = str(error.value)
    assert "'optimistc'" in message
    assert all(name in message for name in STRATEGY_NAMES)


def test_an_unknown_strategy_fails_at_start_up(database_url: str) -> None:
    with pytest.raises(UnknownStrategy):
        create_app(Settings(database_url=database_url, lock_strategy="nope"))


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_statements_per_capture(
    client_for: ClientFactory, gateway: Gateway, strategy: str
) -> None:
    client = await client_for(strategy)
    service: Service = client._transport.app.state.service  # type: ignore[attr-defined]
    sent: list[str] = []

    payment = await new_payment(client)
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    other = await new_payment(client)
    delivery = gateway.event(
        "payment.captured", order_id=other["razorpay_order_id"], amount=other["amount"]
    )
    service.db.query_logger = lambda query: sent.append(query.query)
    try:
        assert (await client.post("/payments/verify", json=checkout.body())).status_code == 200
        verify_statements = len(sent)
        sent.clear()
        response = await client.post(
            "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
        )
        assert response.json() == {"status": "processed"}
        webhook_statements = len(sent)
    finally:
        service.db.query_logger = None
    expected = get_strategy(strategy).statements_per_capture
    assert verify_statements == expected
    assert webhook_statements == expected + WEBHOOK_EXTRA_STATEMENTS


@pytest.fixture
async def impatient(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """for_update with a 100 ms lock_timeout."""
    settings = Settings(database_url=database_url, lock_strategy="for_update", lock_timeout_ms=100)
    app = create_app(settings)
    await app.state.service.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
    ) as client:
        yield client
    await app.state.service.stop()


async def test_a_lock_timeout_answers_503_with_retry_after(
    impatient: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(impatient)
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    holder = sql
    transaction = holder.transaction()
    await transaction.start()
    try:
        # Somebody else holds the payment row: the capture cannot get its lock.
        await holder.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", payment["id"])
        response = await impatient.post("/payments/verify", json=checkout.body())
    finally:
        await transaction.rollback()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "busy"
    assert await effects(sql, payment["id"]) == {
        "allocations": 0,
        "receipts": 0,
        "captured_events": 0,
    }
    # Once the holder is gone, the retry captures.
    retry = await impatient.post("/payments/verify", json=checkout.body())
    assert retry.status_code == 200
    assert retry.json()["replayed"] is False


async def test_an_unreachable_database_answers_503_json() -> None:
    # Port 1 on loopback: nothing listens there, so every connection is refused at once.
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:1/postgres")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://racebench.test") as client:
        created = await client.post("/payments", json={"amount": 100})
        health = await client.get("/healthz")
    assert created.status_code == 503
    assert created.json()["error"]["code"] == "database_unavailable"
    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"


async def test_too_many_connections_answers_503_json(
    database_url: str, sql: asyncpg.Connection
) -> None:
    # A role allowed no connections: PostgreSQL refuses it with SQLSTATE 53300, exactly as it
    # does when max_connections is used up.
    role = f"racebench_limited_{secrets.token_hex(4)}"
    await sql.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        url = parse_url(database_url).set(username=role).render_as_string(hide_password=False)
        app = create_app(Settings(database_url=url))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/payments", json={"amount": 100})
        await app.state.service.stop()
    finally:
        await sql.execute(f'DROP ROLE "{role}"')
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "too many connections" in response.json()["error"]["message"]
