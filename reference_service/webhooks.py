"""Razorpay's webhook path: verify, keep every delivery, deduplicate, then capture or fail.

Order of work, and why:
1. The signature is checked over the raw body, exactly as received, before any parsing.
2. The body is parsed (nested at most MAX_JSON_DEPTH levels, checked without recursion); a
   handled event must carry a well-formed entity.
3. One statement claims the event id (a partial unique index lets only one delivery claim it)
   and looks the payment up by order id. A concurrent duplicate waits on that index and then
   finds the claim taken: it is kept as a `duplicate` and changes nothing.
4. The amount and currency must match the payment (they never change after creation).
5. capture() or fail(), the same code the checkout path uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from racebench.razorpay import CAPTURE_EVENTS, RazorpayEvent
from racebench.reference_service.capture import capture, fail
from racebench.reference_service.db import Database, Tx
from racebench.reference_service.errors import AmountMismatch, EventIdMissing, PayloadInvalid
from racebench.reference_service.json_depth import MAX_JSON_DEPTH, json_depth_exceeds
from racebench.reference_service.models import (
    CLAIMING_OUTCOMES,
    EVENT_ID_LENGTH,
    CaptureSource,
    PaymentStatus,
    WebhookOutcome,
)
from racebench.reference_service.payments import payment_key
from racebench.reference_service.schemas import INTEGRAL, RazorpayId
from racebench.reference_service.signatures import SignatureVerifier
from racebench.reference_service.strategies import LockStrategy

# Event ids and types are stored; keep them to the sizes of their columns.
MAX_EVENT_ID_LENGTH = EVENT_ID_LENGTH
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class Action(StrEnum):
    CAPTURE = "capture"
    FAIL = "fail"
    IGNORE = "ignore"


# Every capture event captures (the first to arrive wins); every other known one fails.
EVENT_ACTIONS: dict[str, Action] = {
    event: Action.CAPTURE if event in CAPTURE_EVENTS else Action.FAIL for event in RazorpayEvent
}

_CLAIMING = ", ".join(f"'{o.value}'" for o in CLAIMING_OUTCOMES)
# $1 event id, $2 event type, $3 raw payload, $4 order id (NULL for unhandled types).
CLAIM_EVENT = f"""
    WITH claim AS (
        INSERT INTO webhook_events (event_id, event_type, payload, outcome)
        VALUES ($1, $2, $3, '{WebhookOutcome.PROCESSED.value}')
        ON CONFLICT (event_id) WHERE outcome IN ({_CLAIMING}) DO NOTHING
        RETURNING id
    )
    SELECT (SELECT id FROM claim) AS claim_id, p.id AS payment_id, p.amount, p.currency
    FROM (SELECT 1) AS one LEFT JOIN payments p ON p.razorpay_order_id = $4"""
KEEP_DUPLICATE = (
    "INSERT INTO webhook_events (event_id, event_type, payload, outcome) "
    f"VALUES ($1, $2, $3, '{WebhookOutcome.DUPLICATE.value}')"
)
SET_OUTCOME = "UPDATE webhook_events SET outcome = $2 WHERE id = $1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class PaymentEntity(_Model):
    id: RazorpayId
    order_id: RazorpayId
    amount: Annotated[StrictInt, Field(ge=0), INTEGRAL]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class OrderEntity(_Model):
    id: RazorpayId
    amount: Annotated[StrictInt, Field(ge=0), INTEGRAL]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _PaymentWrapper(_Model):
    entity: PaymentEntity


class _OrderWrapper(_Model):
    entity: OrderEntity


class PaymentEventPayload(_Model):
    payment: _PaymentWrapper


class OrderPaidPayload(_Model):
    order: _OrderWrapper
    payment: _PaymentWrapper | None = None


class _Envelope(_Model):
    event: Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]
    payload: dict[str, Any]  # Razorpay always sends one; a type not handled is not read


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    type: str
    action: Action
    order_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    razorpay_payment_id: str | None = None


def parse_event(body: str) -> ParsedEvent:
    """The parts of a Razorpay event that matter here; PayloadInvalid if it is not one."""
    if json_depth_exceeds(body):
        raise PayloadInvalid(f"not a Razorpay event: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        envelope = _Envelope.model_validate(json.loads(body))
        action = EVENT_ACTIONS.get(envelope.event, Action.IGNORE)
        if action is Action.IGNORE:
            return ParsedEvent(envelope.event, action)
        if envelope.event == RazorpayEvent.ORDER_PAID:
            paid = OrderPaidPayload.model_validate(envelope.payload)
            order = paid.order.entity
            payment_id = paid.payment.entity.id if paid.payment else None
            return ParsedEvent(
                envelope.event, action, order.id, order.amount, order.currency, payment_id
            )
        entity = PaymentEventPayload.model_validate(envelope.payload).payment.entity
        return ParsedEvent(
            envelope.event, action, entity.order_id, entity.amount, entity.currency, entity.id
        )
    except ValueError as error:  # json.JSONDecodeError and ValidationError are ValueErrors
        detail = error.errors()[0]["msg"] if isinstance(error, ValidationError) else str(error)
        raise PayloadInvalid(f"not a Razorpay event: {detail}") from None


@dataclass(frozen=True, slots=True)
class _Rejected:
    message: str


async def receive_webhook(
    db: Database,
    strategy: LockStrategy,
    verifier: SignatureVerifier,
    raw_body: bytes,
    signature: str | None,
    event_id: str | None,
) -> WebhookOutcome:
    """Handle one delivery; return the outcome answered with 200."""
    body = verifier.check_webhook(raw_body, signature)
    if not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise EventIdMissing(
            f"the X-Razorpay-Event-Id header must hold 1 to {MAX_EVENT_ID_LENGTH} characters"
        )
    event = parse_event(body)
    delivery = (event_id, event.type, body)

    async def work(tx: Tx) -> WebhookOutcome | _Rejected:
        claimed = await tx.fetchrow(CLAIM_EVENT, *delivery, event.order_id)
        assert claimed is not None  # the LEFT JOIN always yields one row
        if claimed["claim_id"] is None:
            await tx.execute(KEEP_DUPLICATE, *delivery)
            return WebhookOutcome.DUPLICATE

        async def settle(outcome: WebhookOutcome) -> WebhookOutcome:
            await tx.execute(SET_OUTCOME, claimed["claim_id"], outcome.value)
            return outcome

        if event.action is Action.IGNORE:
            return await settle(WebhookOutcome.IGNORED)
        payment_id = claimed["payment_id"]
        if payment_id is None:
            return await settle(WebhookOutcome.UNMATCHED)
        if (event.amount, event.currency) != (claimed["amount"], claimed["currency"]):
            await settle(WebhookOutcome.REJECTED)
            return _Rejected(
                f"event says {event.amount} {event.currency}, "
                f"payment {payment_id} is {claimed['amount']} {claimed['currency']}"
            )
        source = f"webhook:{event_id}"
        if event.action is Action.CAPTURE:
            await capture(
                tx,
                strategy,
                payment_id,
                via=CaptureSource.WEBHOOK,
                source=source,
                razorpay_payment_id=event.razorpay_payment_id,
            )
            return WebhookOutcome.PROCESSED
        failed = await fail(tx, strategy, payment_id, source=source)
        if not failed.applied and failed.status == PaymentStatus.CAPTURED:
            # A stale failure after the capture: kept, never applied (no status regression).
            return await settle(WebhookOutcome.IGNORED)
        return WebhookOutcome.PROCESSED

    # The payment is known only inside the transaction; its order id stands in for it.
    key = payment_key(event.order_id) if event.order_id is not None else None
    outcome = await db.run(
        work, isolation=strategy.isolation_level, retry=strategy.retry_transaction, key=key
    )
    if isinstance(outcome, _Rejected):
        raise AmountMismatch(outcome.message)
    return outcome
