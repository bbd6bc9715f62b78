"""The enums name the contract's wire values; their values are the contract (docs/contracts.md)."""

from __future__ import annotations

from racebench.razorpay import RazorpayEvent
from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings
from racebench.reference_service.models import ANSWERED_OUTCOMES, WebhookOutcome
from racebench.reference_service.race_points import RacePoint
from racebench.reference_service.schemas import VerifyPublic, WebhookAck


def test_the_wire_values_are_the_contracts() -> None:
    assert [e.value for e in RazorpayEvent] == [
        "payment.authorized",
        "payment.captured",
        "payment.failed",
        "order.paid",
    ]
    assert [o.value for o in WebhookOutcome] == [
        "processed",
        "duplicate",
        "ignored",
        "unmatched",
        "rejected",
    ]
    # The two points of the contract (docs/contracts.md) hold actors; the others are reported
    # to a harness's timeline only (a replay's skip, a COMMIT or ROLLBACK as it happens).
    assert [p.value for p in RacePoint] == [
        "capture.after_read",
        "capture.before_commit",
        "capture.already_captured",
        "transaction.after_commit",
        "transaction.after_rollback",
    ]


def test_the_response_schemas_say_the_same_values() -> None:
    assert set(WebhookOutcome) - {WebhookOutcome.REJECTED} == ANSWERED_OUTCOMES
    assert WebhookAck(status=WebhookOutcome.IGNORED).model_dump(mode="json") == {
        "status": "ignored"
    }
    verify = VerifyPublic(id=1, invoice_status="paid", replayed=False)
    assert verify.model_dump(mode="json")["status"] == "captured"
    schemas = create_app(Settings()).openapi()["components"]["schemas"]
    status = schemas["WebhookAck"]["properties"]["status"]
    assert sorted(status["enum"]) == ["duplicate", "ignored", "processed", "unmatched"]
