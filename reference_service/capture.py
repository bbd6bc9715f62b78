"""What capturing a payment means: written once, used by the checkout and the webhook path.

A capture, in one transaction: the payment moves pending (or failed) -> captured, the invoice
gets one allocation and its amount_paid and status follow, one receipt is issued and one audit
event recorded. The lock strategy decides only how the rows are claimed; the status is always
checked after the strategy's read, so a strategy that locks there makes the check safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from racebench.reference_service.db import DatabaseBusy, Tx
from racebench.reference_service.errors import PaymentNotFound
from racebench.reference_service.models import CaptureSource, PaymentStatus
from racebench.reference_service.race_points import RacePoint, race_point
from racebench.reference_service.strategies import Capture, LockStrategy, PaymentRow

# A lost compare-and-set means another transaction changed the payment; after a re-read it is
# captured (we stop) or failed (one more try). More than a few rounds means a livelock.
MAX_CLAIM_ATTEMPTS = 5

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
    who = Capture(via.value, source, razorpay_payment_id)
    for _ in range(MAX_CLAIM_ATTEMPTS):
        payment = await _read(tx, strategy, payment_id, check)
        if payment.status == PaymentStatus.CAPTURED:
            await race_point(RacePoint.ALREADY_CAPTURED)
            status = await tx.fetchval(SELECT_INVOICE_STATUS, payment.invoice_id)
            return CaptureResult(payment.id, status, replayed=True)
        await race_point(RacePoint.AFTER_READ)
        invoice_status = await strategy.write_capture(tx, payment, who)
        if invoice_status is not None:
            await race_point(RacePoint.BEFORE_COMMIT)
            return CaptureResult(payment.id, invoice_status.value, replayed=False)
    raise DatabaseBusy(f"payment {payment_id} kept changing under the capture")


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
        await race_point(RacePoint.AFTER_READ)
        if await strategy.write_failure(tx, payment, source):
            await race_point(RacePoint.BEFORE_COMMIT)
            return FailResult(payment.id, PaymentStatus.FAILED.value, applied=True)
    raise DatabaseBusy(f"payment {payment_id} kept changing under the failure")
