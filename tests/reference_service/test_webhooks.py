"""Duplicate deliveries apply once and are all kept; every handled event type captures once."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from racebench.harness.gateway import Gateway
from racebench.reference_service.webhooks import MAX_EVENT_ID_LENGTH
from tests.conftest import effects, new_payment

ONCE = {"allocations": 1, "receipts": 1, "captured_events": 1}


async def test_duplicate_deliveries_apply_once_and_are_all_kept(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    event = gateway.event(
        "payment.captured", order_id=payment["razorpay_order_id"], amount=payment["amount"]
    )
    responses = await asyncio.gather(
        *(
            client.post("/webhooks/razorpay", content=event.body, headers=event.headers())
            for _ in range(5)
        )
    )
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["duplicate"] * 4 + ["processed"]
    kept = await sql.fetch(
        "SELECT outcome, payload FROM webhook_events WHERE event_id = $1", event.event_id
    )
    assert len(kept) == 5
    assert {row["payload"] for row in kept} == {event.body.decode()}
    assert await effects(sql, payment["id"]) == ONCE


@pytest.mark.parametrize("event_type", ["payment.authorized", "payment.captured", "order.paid"])
async def test_each_capture_event_captures_once(
    client_for, gateway: Gateway, sql: asyncpg.Connection, event_type: str
) -> None:
    client = await client_for("for_update")
    payment = await new_payment(client)
    event = gateway.event(event_type, order_id=payment["razorpay_order_id"], amount=100_000)
    response = await client.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert response.json() == {"status": "processed"}
    assert await effects(sql, payment["id"]) == ONCE
    source = await sql.fetchval(
        "SELECT source FROM payment_events WHERE payment_id = $1", payment["id"]
    )
    assert source == f"webhook:{event.event_id}"


async def test_the_longest_event_id_captures_and_is_traced_in_full(
    client_for, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    """The header allows 128 characters; the audit source "webhook:<id>" is 136 and once
    overflowed its column: a 500 (found by schemathesis with every check)."""
    client = await client_for("for_update")
    payment = await new_payment(client)
    event_id = "evt_" + "0" * (MAX_EVENT_ID_LENGTH - 4)
    event = gateway.event(
        "payment.authorized",
        order_id=payment["razorpay_order_id"],
        amount=payment["amount"],
        event_id=event_id,
    )
    response = await client.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert response.status_code == 200 and response.json() == {"status": "processed"}
    source = await sql.fetchval(
        "SELECT source FROM payment_events WHERE payment_id = $1", payment["id"]
    )
    assert source == f"webhook:{event_id}"
    longer = gateway.event(
        "payment.captured", order_id=payment["razorpay_order_id"], amount=payment["amount"]
    )
    headers = {**longer.headers(), "X-Razorpay-Event-Id": event_id + "0"}
    refused = await client.post("/webhooks/razorpay", content=longer.body, headers=headers)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "event_id_missing"


async def test_all_three_capture_events_in_every_order_capture_once(
    client_for, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    client = await client_for("for_update")
    payment = await new_payment(client)
    events = [
        gateway.event(t, order_id=payment["razorpay_order_id"], amount=100_000)
        for t in ("order.paid", "payment.captured", "payment.authorized")
    ]
    responses = [
        await client.post("/webhooks/razorpay", content=e.body, headers=e.headers()) for e in events
    ]
    assert [r.json()["status"] for r in responses] == ["processed"] * 3
    assert await effects(sql, payment["id"]) == ONCE
