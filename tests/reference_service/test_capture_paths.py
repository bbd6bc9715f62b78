"""Every endpoint's normal path, for every strategy: each order of the two capture paths
leaves exactly one allocation, one receipt and one captured event."""

from __future__ import annotations

import asyncpg
import httpx

from racebench.harness.gateway import Gateway
from racebench.reference_service.strategies import STRATEGY_NAMES
from tests.conftest import effects, new_payment

ONCE = {"allocations": 1, "receipts": 1, "captured_events": 1}


async def test_client_then_webhook(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    assert payment["status"] == "pending"
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])

    verified = await client.post("/payments/verify", json=checkout.body())
    assert verified.status_code == 200, verified.text
    assert verified.json() == {
        "id": payment["id"],
        "status": "captured",
        "invoice_status": "paid",
        "replayed": False,
    }
    event = gateway.event(
        "payment.captured",
        order_id=payment["razorpay_order_id"],
        amount=payment["amount"],
        payment_id=checkout.razorpay_payment_id,
    )
    hooked = await client.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert hooked.status_code == 200
    assert hooked.json() == {"status": "processed"}

    assert await effects(sql, payment["id"]) == ONCE
    detail = (await client.get(f"/payments/{payment['id']}")).json()
    assert detail["status"] == "captured"
    assert detail["captured_via"] == "client"
    assert detail["razorpay_payment_id"] == checkout.razorpay_payment_id
    assert detail["captured_at"] is not None
    invoice = (await client.get(f"/invoices/{payment['invoice_id']}")).json()
    assert invoice == {
        "id": payment["invoice_id"],
        "amount": 100_000,
        "amount_paid": 100_000,
        "status": "paid",
    }


async def test_webhook_then_client(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    event = gateway.event(
        "payment.captured",
        order_id=payment["razorpay_order_id"],
        amount=payment["amount"],
        payment_id=checkout.razorpay_payment_id,
    )
    hooked = await client.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert hooked.json() == {"status": "processed"}

    verified = await client.post("/payments/verify", json=checkout.body())
    assert verified.status_code == 200
    assert verified.json()["replayed"] is True
    assert verified.json()["invoice_status"] == "paid"

    assert await effects(sql, payment["id"]) == ONCE
    detail = (await client.get(f"/payments/{payment['id']}")).json()
    assert detail["captured_via"] == "webhook"


async def test_two_payments_of_one_invoice(client: httpx.AsyncClient, gateway: Gateway) -> None:
    first = await new_payment(client, 60_000)
    second = await new_payment(client, 40_000, invoice_id=first["invoice_id"])
    assert second["invoice_id"] == first["invoice_id"]
    # The invoice was made for the first payment's amount; a second payment tops it up.
    await client.post(
        "/payments/verify",
        json=gateway.checkout(first["id"], first["razorpay_order_id"]).body(),
    )
    after_first = (await client.get(f"/invoices/{first['invoice_id']}")).json()
    assert after_first["amount_paid"] == 60_000
    assert after_first["status"] == "paid"
    await client.post(
        "/payments/verify",
        json=gateway.checkout(second["id"], second["razorpay_order_id"]).body(),
    )
    after_both = (await client.get(f"/invoices/{first['invoice_id']}")).json()
    assert after_both["amount_paid"] == 100_000


async def test_failed_then_captured_late(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    failed = gateway.event(
        "payment.failed", order_id=payment["razorpay_order_id"], amount=payment["amount"]
    )
    response = await client.post(
        "/webhooks/razorpay", content=failed.body, headers=failed.headers()
    )
    assert response.json() == {"status": "processed"}
    assert (await client.get(f"/payments/{payment['id']}")).json()["status"] == "failed"

    # A late authorisation still captures a failed payment.
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    verified = await client.post("/payments/verify", json=checkout.body())
    assert verified.status_code == 200
    assert verified.json()["replayed"] is False
    assert await effects(sql, payment["id"]) == ONCE


async def test_captured_never_moves_back(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    await client.post("/payments/verify", json=checkout.body())
    stale = gateway.event(
        "payment.failed", order_id=payment["razorpay_order_id"], amount=payment["amount"]
    )
    response = await client.post("/webhooks/razorpay", content=stale.body, headers=stale.headers())
    assert response.json() == {"status": "ignored"}
    assert (await client.get(f"/payments/{payment['id']}")).json()["status"] == "captured"
    kept = await sql.fetchval(
        "SELECT outcome FROM webhook_events WHERE event_id = $1", stale.event_id
    )
    assert kept == "ignored"


async def test_healthz_names_the_strategy(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["strategy"] in STRATEGY_NAMES
