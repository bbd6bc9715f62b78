"""What capturing a payment means: written once, used by the checkout and the webhook path.

A capture, in one transaction: the payment moves pending (or failed) -> captured, the invoice
gets one allocation and its amount_paid and status follow, one receipt is issued and one audit
event recorded. The lock strategy decides only how the rows are claimed; the status is always
checked after the strategy's read, so a strategy that locks there makes the check safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reference_service.db import DatabaseBusy, Tx
from reference_service.errors import PaymentNotFound
from reference_service.models import CaptureSource, PaymentStatus
from reference_service.race_points import AFTER_READ, BEFORE_COMMIT, race_point
from reference_service.strategies import LockStrategy, PaymentRow, Transition

# A lost compare-and-set means another transaction changed the payment; after a re-read it is
# captured (we stop) or failed (one more try). More than a few rounds means a livelock.
MAX_CLAIM_ATTEMPTS = 5

# Allocation, receipt and audit event in one round trip.
# $1 payment, $2 invoice, $3 amount, $4 the status captured from, $5 source.
RECORD_CAPTURE_EFFECTS = """
    WITH allocation AS (
        INSERT INTO payment_allocations (payment_id, invoice_id, amount) VALUES ($1, $2, $3)
    ), receipt AS (
        INSERT INTO receipts (payment_id) VALUES ($1)
    )
    INSERT INTO payment_events (payment_id, from_status, to_status, source)
    VALUES ($1, $4, 'captured', $5)"""
RECORD_EVENT = (
    "INSERT INTO payment_events (payment_id, from_status, to_status, source) "
    "VALUES ($1, $2, $3, $4)"
)
SELECT_INVOICE_STATUS = "SELECT status FROM invoices WHERE id = $1"

PaymentCheck = Callable[[PaymentRow], None]
"""Raises a ServiceError if this request may not touch the payment it read."""


@dataclass(frozen=True, slots=True)
class CaptureResult:
    payment_id: int
    invoice_status: str
    replayed: bool  # already captured: nothing was written


@dataclass(frozen=True, slots=True)
class FailResult:
    payment_id: int
    status: str  # the status the payment has now
    applied: bool


async def _read(
    tx: Tx, strategy: LockStrategy, payment_id: int, check: PaymentCheck | None
) -> PaymentRow:
    payment = await strategy.read_payment(tx, payment_id)
    if payment is None:
        raise PaymentNotFound(f"no payment with id {payment_id}", payment_id=payment_id)
    if check is not None:
        check(payment)
    return payment


async def capture(
    tx: Tx,
    strategy: LockStrategy,
    payment_id: int,
    *,
    via: CaptureSource,
    source: str,
    razorpay_payment_id: str | None,
    check: PaymentCheck | None = None,
) -> CaptureResult:
    """Capture the payment exactly once; a capture of a captured payment is a replay."""
    for _ in range(MAX_CLAIM_ATTEMPTS):
        payment = await _read(tx, strategy, payment_id, check)
        if payment.status == PaymentStatus.CAPTURED:
            status = await tx.fetchval(SELECT_INVOICE_STATUS, payment.invoice_id)
            return CaptureResult(payment.id, status, replayed=True)
        await race_point(AFTER_READ)
        change = Transition(PaymentStatus.CAPTURED, via.value, razorpay_payment_id)
        if await strategy.transition(tx, payment, change):
            break
    else:
        raise DatabaseBusy(f"payment {payment_id} kept changing under the capture")

    invoice_status = await strategy.add_to_invoice(tx, payment.invoice_id, payment.amount)
    await tx.execute(
        RECORD_CAPTURE_EFFECTS,
        payment.id,
        payment.invoice_id,
        payment.amount,
        payment.status,
        source,
    )
    await race_point(BEFORE_COMMIT)
    return CaptureResult(payment.id, invoice_status.value, replayed=False)


async def fail(
    tx: Tx,
    strategy: LockStrategy,
    payment_id: int,
    *,
    source: str,
    check: PaymentCheck | None = None,
) -> FailResult:
    """Mark a pending payment failed. A captured payment never moves back."""
    for _ in range(MAX_CLAIM_ATTEMPTS):
        payment = await _read(tx, strategy, payment_id, check)
        if payment.status != PaymentStatus.PENDING:
            return FailResult(payment.id, payment.status, applied=False)
        await race_point(AFTER_READ)
        if await strategy.transition(tx, payment, Transition(PaymentStatus.FAILED)):
            break
    else:
        raise DatabaseBusy(f"payment {payment_id} kept changing under the failure")
    await tx.execute(RECORD_EVENT, payment.id, payment.status, PaymentStatus.FAILED.value, source)
    await race_point(BEFORE_COMMIT)
    return FailResult(payment.id, PaymentStatus.FAILED.value, applied=True)
