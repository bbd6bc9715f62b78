"""/openapi.json describes the API as it answers: error bodies, codes, webhook body, headers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from racebench.razorpay import RazorpayEvent
from racebench.reference_service.errors import error_body
from racebench.reference_service.openapi import ErrorBody
from racebench.reference_service.schemas import MAX_ID
from tests.conftest import ClientFactory

ERROR = {"$ref": "#/components/schemas/ErrorBody"}
EXPECTED = {
    ("post", "/payments"): {"201", "400", "404", "409", "413", "422", "503"},
    ("post", "/payments/verify"): {"200", "400", "404", "409", "413", "422", "503"},
    ("get", "/payments/{payment_id}"): {"200", "404", "413", "422", "503"},
    ("get", "/invoices/{invoice_id}"): {"200", "404", "413", "422", "503"},
    ("post", "/webhooks/razorpay"): {"200", "400", "413", "422", "503"},
    ("get", "/healthz"): {"200", "413", "503"},
}


@pytest.fixture
async def document(client_for: ClientFactory) -> dict[str, Any]:
    api: httpx.AsyncClient = await client_for("for_update")
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_every_operation_documents_the_codes_it_answers(document: dict[str, Any]) -> None:
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(operations) == set(EXPECTED)
    for key, codes in EXPECTED.items():
        responses = operations[key]["responses"]
        assert set(responses) == codes, key
        for code, response in responses.items():
            if code.startswith(("4", "5")) and key != ("get", "/healthz"):
                assert response["content"]["application/json"]["schema"] == ERROR, (key, code)
        if "503" in responses:
            assert "Retry-After" in responses["503"].get("headers", {}) or key[1] == "/healthz"


async def test_the_error_schema_is_the_error_body(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message"}
    assert "details" in schemas["ErrorDetail"]["properties"]
    # What errors.py sends validates against it, with and without details.
    ErrorBody.model_validate(error_body("signature_invalid", "no"))
    ErrorBody.model_validate(error_body("validation_error", "no", errors=[{"loc": ["body"]}]))


async def test_webhook_body_and_headers_are_documented(document: dict[str, Any]) -> None:
    webhook = document["paths"]["/webhooks/razorpay"]["post"]
    headers = {p["name"]: p for p in webhook["parameters"] if p["in"] == "header"}
    for name in ("X-Razorpay-Signature", "X-Razorpay-Event-Id"):
        assert headers[name]["required"] is True
        assert headers[name]["schema"]["type"] == "string"
        assert "null" not in str(headers[name]["schema"])
    body = webhook["requestBody"]
    assert body["required"] is True
    event = body["content"]["application/json"]["schema"]
    assert event == {"$ref": "#/components/schemas/RazorpayWebhookEvent"}
    schemas = document["components"]["schemas"]
    branches = [b["$ref"].rsplit("/", 1)[1] for b in schemas["RazorpayWebhookEvent"]["anyOf"]]
    assert branches == ["RazorpayPaymentEvent", "RazorpayOrderPaidEvent", "RazorpayOtherEvent"]
    handled = {e.value for e in RazorpayEvent}
    events: set[str] = set()
    for name in branches:
        schema = schemas[name]
        # What Razorpay sends is documented; the schema requires only what the service reads
        # (a schema-valid body is never refused for a field it ignores, and the reverse).
        assert {"entity", "account_id", "event", "contains", "payload", "created_at"} <= set(
            schema["properties"]
        )
        assert set(schema["required"]) == {"event", "payload"}
        event = schema["properties"]["event"]
        events |= set(event.get("enum", [event.get("const")]) if "not" not in event else [])
        if "not" in event:
            assert set(event["not"]["enum"]) == handled  # every other type: ignored
    assert events == handled
    assert schemas["RazorpayPaymentPayload"]["required"] == ["payment"]
    assert schemas["RazorpayOrderPaidPayload"]["required"] == ["order"]


async def test_id_bounds_are_the_bigint_limit_exactly(document: dict[str, Any]) -> None:
    """JSON carries 2**63 - 1 exactly; a float bound (FastAPI's model) rounds it to 2**63, an
    id the schema allows and the service refuses with 422."""
    schemas = document["components"]["schemas"]
    verify_id = schemas["VerifyRequest"]["properties"]["internal_payment_id"]
    [invoice_id, _null] = schemas["PaymentCreate"]["properties"]["invoice_id"]["anyOf"]
    for bounds in (verify_id, invoice_id):
        assert bounds["maximum"] == MAX_ID and isinstance(bounds["maximum"], int)
        assert bounds["minimum"] == 1 and isinstance(bounds["minimum"], int)
    paths = document["paths"]
    for path, name in (
        ("/payments/{payment_id}", "payment_id"),
        ("/invoices/{invoice_id}", "invoice_id"),
    ):
        [parameter] = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        assert parameter["schema"].get("maximum") == MAX_ID, parameter
