"""Bad input gets a clear 4xx JSON error, never a 500, and changes nothing it shouldn't."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from racebench.harness.gateway import Gateway
from racebench.reference_service.config import MAX_BODY_BYTES
from tests.conftest import ClientFactory, effects, new_payment

NOTHING = {"allocations": 0, "receipts": 0, "captured_events": 0}


@pytest.fixture
async def api(client_for: ClientFactory) -> httpx.AsyncClient:
    return await client_for("for_update")


@pytest.fixture
async def pending(api: httpx.AsyncClient) -> dict[str, object]:
    return await new_payment(api)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


async def assert_untouched(api: httpx.AsyncClient, sql: asyncpg.Connection, payment) -> None:
    assert (await api.get(f"/payments/{payment['id']}")).json()["status"] == "pending"
    assert await effects(sql, payment["id"]) == NOTHING
    invoice = (await api.get(f"/invoices/{payment['invoice_id']}")).json()
    assert invoice["amount_paid"] == 0


async def kept_deliveries(sql: asyncpg.Connection, event_id: str) -> list[str]:
    rows = await sql.fetch(
        "SELECT outcome FROM webhook_events WHERE event_id = $1 ORDER BY id", event_id
    )
    return [r["outcome"] for r in rows]


# --- checkout verification -------------------------------------------------------------


async def test_wrong_checkout_signature_is_refused_for_every_strategy(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    body = gateway.checkout(payment["id"], payment["razorpay_order_id"]).body()
    body["razorpay_signature"] = "0" * 64
    assert_error(await client.post("/payments/verify", json=body), 400, "signature_invalid")
    await assert_untouched(client, sql, payment)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b, g: b | {"razorpay_signature": "zz"}, id="not-hex"),
        pytest.param(lambda b, g: b | {"razorpay_signature": "é" * 64}, id="non-ascii"),
        pytest.param(
            lambda b, g: (
                b
                | {
                    "razorpay_signature": Gateway(key_secret="someone-else")
                    .checkout(b["internal_payment_id"], b["razorpay_order_id"])
                    .razorpay_signature
                }
            ),
            id="wrong-secret",
        ),
        pytest.param(
            lambda b, g: b | {"razorpay_payment_id": "pay_SomebodyElse01"}, id="other-payment-id"
        ),
    ],
)
async def test_checkout_signature_failures(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection, pending, tamper
) -> None:
    body = tamper(gateway.checkout(pending["id"], pending["razorpay_order_id"]).body(), gateway)
    assert_error(await api.post("/payments/verify", json=body), 400, "signature_invalid")
    await assert_untouched(api, sql, pending)


async def test_order_id_that_differs_from_the_stored_one(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection, pending
) -> None:
    # Correctly signed, but for another order: the check is against the STORED order id.
    other = gateway.checkout(pending["id"], "order_NotTheStored01")
    assert_error(await api.post("/payments/verify", json=other.body()), 409, "order_mismatch")
    await assert_untouched(api, sql, pending)


async def test_unknown_payment(api: httpx.AsyncClient, gateway: Gateway) -> None:
    body = gateway.checkout(987_654_321, "order_Unknown0000001").body()
    assert_error(await api.post("/payments/verify", json=body), 404, "payment_not_found")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b'{"internal_payment_id": 1}', id="missing-fields"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_malformed_verify_bodies(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post(
        "/payments/verify", content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize(
    "field, value",
    [
        ("internal_payment_id", 2**63),
        ("internal_payment_id", 0),
        ("internal_payment_id", True),
        ("internal_payment_id", "7"),
        ("razorpay_order_id", ""),
        ("razorpay_order_id", "x" * 65),
        ("razorpay_payment_id", "pay_\u0000nul"),
        ("unexpected", 1),
    ],
)
async def test_out_of_range_verify_fields(
    api: httpx.AsyncClient, gateway: Gateway, pending, field: str, value: object
) -> None:
    body = gateway.checkout(pending["id"], pending["razorpay_order_id"]).body() | {field: value}
    assert_error(await api.post("/payments/verify", json=body), 422, "validation_error")


async def test_huge_body_is_refused_before_it_is_read(api: httpx.AsyncClient) -> None:
    content = b'{"pad": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    response = await api.post(
        "/payments/verify", content=content, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "body_too_large")


async def test_huge_chunked_body_is_refused(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096

    response = await api.post("/webhooks/razorpay", content=chunks())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body_too_large")


# --- creating and reading -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0},
        {"amount": -5},
        {"amount": "100"},
        {"amount": 10**13},
        {"amount": 100, "currency": "inr"},
        {"amount": 100, "invoice_id": 2**63},
        {"amount": 100.5},
        {"amount": True},
        {"amount": 1e13},
        {},
    ],
)
async def test_bad_payment_creation(api: httpx.AsyncClient, body: dict[str, object]) -> None:
    assert_error(await api.post("/payments", json=body), 422, "validation_error")


async def test_an_integer_written_with_a_zero_fraction_is_an_integer(
    api: httpx.AsyncClient,
) -> None:
    """JSON Schema's (and so the OpenAPI's) integer: 13625.0 is 13625, as a schema-valid
    request must be accepted (schemathesis, every check)."""
    body = b'{"amount": 13625.0}'
    response = await api.post(
        "/payments", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["amount"] == 13625


async def test_payment_for_unknown_invoice(api: httpx.AsyncClient) -> None:
    response = await api.post("/payments", json={"amount": 100, "invoice_id": 999_999_999})
    assert_error(response, 404, "invoice_not_found")


async def test_payment_in_another_currency_than_its_invoice(
    api: httpx.AsyncClient, pending
) -> None:
    body = {"amount": 100, "currency": "USD", "invoice_id": pending["invoice_id"]}
    assert_error(await api.post("/payments", json=body), 409, "currency_mismatch")


@pytest.mark.parametrize(
    "path, status",
    [
        ("/payments/999999999", 404),
        ("/payments/abc", 404),
        ("/payments/99999999999999999999", 422),
        ("/invoices/0", 422),
        ("/invoices/999999999", 404),
        ("/no/such/route", 404),
        # Ids are ASCII digits only: nothing int() or pydantic would also accept.
        ("/payments/1_0", 404),
        ("/payments/+1", 404),
        ("/payments/1.0", 404),
        ("/payments/%201", 404),
        ("/payments/1%20", 404),
        ("/payments/-1", 404),
        ("/invoices/1_0", 404),
        ("/payments/9223372036854775808", 422),
        ("/payments/" + "9" * 5000, 422),
    ],
)
async def test_bad_reads(api: httpx.AsyncClient, path: str, status: int) -> None:
    assert_error(await api.get(path), status)


async def test_wrong_method(api: httpx.AsyncClient) -> None:
    # /payments/verify is not a payment id: its GET is a wrong method, not a bad id.
    response = await api.get("/payments/verify")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    response = await api.delete("/healthz")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"
    response = await api.put("/payments/1")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


# --- webhooks -------------------------------------------------------------------------


async def test_webhook_signature_failures_for_every_strategy(
    client: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    payment = await new_payment(client)
    event = gateway.event(
        "payment.captured", order_id=payment["razorpay_order_id"], amount=payment["amount"]
    )
    bad = event.with_bad_signature()
    response = await client.post("/webhooks/razorpay", content=bad.body, headers=bad.headers())
    assert_error(response, 400, "signature_invalid")
    headers = event.headers()
    del headers["X-Razorpay-Signature"]
    response = await client.post("/webhooks/razorpay", content=event.body, headers=headers)
    assert_error(response, 400, "signature_missing")
    # Signed over other bytes than those sent (one space added after signing).
    response = await client.post(
        "/webhooks/razorpay", content=event.body + b" ", headers=event.headers()
    )
    assert_error(response, 400, "signature_invalid")
    await assert_untouched(client, sql, payment)
    assert await kept_deliveries(sql, event.event_id) == []


async def test_webhook_body_not_utf8(api: httpx.AsyncClient, gateway: Gateway) -> None:
    delivery = gateway.sign(b"\xff\xfe not utf-8")
    response = await api.post(
        "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
    )
    assert_error(response, 400, "body_not_utf8")


async def test_webhook_non_ascii_signature(api: httpx.AsyncClient, gateway: Gateway) -> None:
    delivery = gateway.sign(b"{}")
    headers = delivery.headers() | {"X-Razorpay-Signature": "\u00e9" * 64}
    response = await api.post(
        "/webhooks/razorpay",
        content=delivery.body,
        headers={k: v.encode("latin-1") for k, v in headers.items()},
    )
    assert_error(response, 400, "signature_invalid")


async def test_webhook_without_event_id(api: httpx.AsyncClient, gateway: Gateway, pending) -> None:
    event = gateway.event("payment.captured", order_id=pending["razorpay_order_id"], amount=100_000)
    headers = event.headers()
    del headers["X-Razorpay-Event-Id"]
    response = await api.post("/webhooks/razorpay", content=event.body, headers=headers)
    assert_error(response, 400, "event_id_missing")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"event": "payment.captured"}', id="no-payload"),
        pytest.param(
            b'{"event": "payment.captured", "payload": {"payment": {"entity": {"id": "pay_1"}}}}',
            id="entity-missing-fields",
        ),
        pytest.param(
            json.dumps(
                {
                    "event": "payment.captured",
                    "payload": {
                        "payment": {
                            "entity": {
                                "id": "pay_1",
                                "order_id": "order_\u0000x",
                                "amount": 1,
                                "currency": "INR",
                            }
                        }
                    },
                }
            ).encode(),
            id="nul-in-order-id",
        ),
        pytest.param(b'{"event": "x\\u0000y", "payload": {}}', id="nul-in-event-type"),
    ],
)
async def test_signed_but_malformed_webhooks(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection, body: bytes
) -> None:
    delivery = gateway.sign(body)
    response = await api.post(
        "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
    )
    assert_error(response, 422, "payload_invalid")
    assert await kept_deliveries(sql, delivery.event_id) == []


@pytest.mark.parametrize(
    "amount, currency", [(99_999, "INR"), (100_000, "USD")], ids=["amount", "currency"]
)
async def test_webhook_whose_amount_does_not_match(
    api: httpx.AsyncClient,
    gateway: Gateway,
    sql: asyncpg.Connection,
    pending,
    amount: int,
    currency: str,
) -> None:
    event = gateway.event(
        "payment.captured",
        order_id=pending["razorpay_order_id"],
        amount=amount,
        currency=currency,
    )
    response = await api.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert_error(response, 422, "amount_mismatch")
    await assert_untouched(api, sql, pending)
    # Kept for a human to look at, and not counted as handled.
    assert await kept_deliveries(sql, event.event_id) == ["rejected"]


async def test_unknown_event_type_is_ignored_and_kept(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection, pending
) -> None:
    event = gateway.event("refund.processed", order_id=pending["razorpay_order_id"], amount=1)
    response = await api.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert await kept_deliveries(sql, event.event_id) == ["ignored"]
    await assert_untouched(api, sql, pending)


async def test_unknown_order_is_unmatched_and_kept(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    event = gateway.event("payment.captured", order_id="order_NobodyKnows001", amount=100)
    response = await api.post("/webhooks/razorpay", content=event.body, headers=event.headers())
    assert response.status_code == 200
    assert response.json() == {"status": "unmatched"}
    assert await kept_deliveries(sql, event.event_id) == ["unmatched"]


# --- deeply nested JSON ---------------------------------------------------------------

DEEP = b"[" * 1000 + b"]" * 1000


def nested_event(depth: int) -> bytes:
    """An unknown (so ignored) event whose body nests `depth` levels in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return f'{{"event": "refund.processed", "payload": {{"deep": {inner}}}}}'.encode()


async def test_deeply_nested_signed_webhook_is_refused(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    for body in (DEEP, b'{"event": "refund.processed", "payload": ' + DEEP + b"}"):
        delivery = gateway.sign(body)
        response = await api.post(
            "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
        )
        assert_error(response, 422, "payload_invalid")
        assert await kept_deliveries(sql, delivery.event_id) == []


async def test_deeply_nested_unsigned_webhook_fails_on_its_signature_first(
    api: httpx.AsyncClient, gateway: Gateway
) -> None:
    bad = gateway.sign(DEEP).with_bad_signature()
    response = await api.post("/webhooks/razorpay", content=bad.body, headers=bad.headers())
    assert_error(response, 400, "signature_invalid")


async def test_webhook_nesting_limit_is_64_and_strings_do_not_count(
    api: httpx.AsyncClient, gateway: Gateway, sql: asyncpg.Connection
) -> None:
    text = "[{" * 500
    for body, status in [
        (nested_event(64), 200),
        (nested_event(65), 422),
        (f'{{"event": "refund.processed", "payload": {{"note": "{text}"}}}}'.encode(), 200),
    ]:
        delivery = gateway.sign(body)
        response = await api.post(
            "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
        )
        assert response.status_code == status, response.text
        if status == 200:
            assert await kept_deliveries(sql, delivery.event_id) == ["ignored"]


@pytest.mark.parametrize("path", ["/payments", "/payments/verify"])
async def test_deeply_nested_json_bodies_are_refused_alike(
    api: httpx.AsyncClient, path: str
) -> None:
    for body in (DEEP, b'{"amount": ' + DEEP + b"}"):
        response = await api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert_error(response, 422, "payload_invalid")
