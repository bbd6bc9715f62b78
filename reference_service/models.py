"""The tables of docs/contracts.md (CONTRACT: tables), as SQLAlchemy Core tables.

The capture path runs Core statements against these, not ORM objects: a capture is a handful
of statements and the ORM's unit of work would cost more than the statements themselves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)


class PaymentStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    FAILED = "failed"


class InvoiceStatus(StrEnum):
    UNPAID = "unpaid"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"


class CaptureSource(StrEnum):
    """Which path captured a payment (payments.captured_via)."""

    CLIENT = "client"
    WEBHOOK = "webhook"


class WebhookOutcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    UNMATCHED = "unmatched"
    # Signed by Razorpay but inconsistent with our payment (amount or currency differ):
    # kept for a human, nothing applied, and a retry of the same event is judged afresh.
    REJECTED = "rejected"


# What a delivery answered 200 says (WebhookAck); a rejected one answers 400 instead.
AnsweredOutcome = Literal[
    WebhookOutcome.PROCESSED,
    WebhookOutcome.DUPLICATE,
    WebhookOutcome.IGNORED,
    WebhookOutcome.UNMATCHED,
]
ANSWERED_OUTCOMES: frozenset[WebhookOutcome] = frozenset(get_args(AnsweredOutcome))

# Outcomes that "use up" an event id: a later delivery of the same id is a duplicate.
# The longest Razorpay event id a webhook may carry (its X-Razorpay-Event-Id header), and the
# longest audit source that names one: "webhook:<event id>".
EVENT_ID_LENGTH = 128
SOURCE_LENGTH = len("webhook:") + EVENT_ID_LENGTH

CLAIMING_OUTCOMES = (WebhookOutcome.PROCESSED, WebhookOutcome.IGNORED, WebhookOutcome.UNMATCHED)

metadata = MetaData()

invoices = Table(
    "invoices",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("amount", BigInteger, nullable=False),
    Column("amount_paid", BigInteger, nullable=False, server_default=text("0")),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False, server_default=InvoiceStatus.UNPAID.value),
)

payments = Table(
    "payments",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False, server_default=PaymentStatus.PENDING.value),
    Column("razorpay_order_id", String(64), nullable=False, unique=True),
    Column("razorpay_payment_id", String(64)),
    Column("captured_via", String(16)),
    Column("captured_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default=text("1")),
)

# Deliberately no unique constraint on payment_id: the race must be visible (docs/contracts.md).
payment_allocations = Table(
    "payment_allocations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), nullable=False, index=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), nullable=False, index=True),
)

payment_events = Table(
    "payment_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), nullable=False, index=True),
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    # "client", or "webhook:<event id>" so that one event's effects can be traced: room for
    # the longest event id the webhook accepts (EVENT_ID_LENGTH) after its prefix.
    Column("source", String(SOURCE_LENGTH), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", String(EVENT_ID_LENGTH), nullable=False, index=True),
    Column("event_type", String(64), nullable=False),
    # The raw body exactly as it was signed and received.
    Column("payload", Text, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One delivery per event id may claim it; duplicates are kept beside it with their own outcome.
# This index, not the lock strategy, is what makes a redelivered event apply at most once.
Index(
    "webhook_events_claim",
    webhook_events.c.event_id,
    unique=True,
    postgresql_where=webhook_events.c.outcome.in_([o.value for o in CLAIMING_OUTCOMES]),
)
