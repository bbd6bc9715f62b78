"""`optimistic`: compare-and-set on payments.version (and on the invoice's amount_paid);
on a conflict, read again and re-check."""

from __future__ import annotations

from racebench.reference_service.db import DatabaseBusy, Tx
from racebench.reference_service.models import InvoiceStatus
from racebench.reference_service.strategies.base import (
    Capture,
    LockStrategy,
    PaymentRow,
    invoice_status,
)
from racebench.reference_service.writes import (
    CLAIM_PAYMENT_IF_VERSION,
    WRITE_CAPTURE_EFFECTS,
    WRITE_FAILURE_IF_VERSION,
)

# $1 invoice, $2 new amount_paid, $3 new status, $4 the amount_paid this transaction read.
CAS_INVOICE = "UPDATE invoices SET amount_paid = $2, status = $3 WHERE id = $1 AND amount_paid = $4"

# Each failed compare-and-set means another capture of this invoice committed in between;
# with N payments on one invoice at most N-1 can do that, and invoices here have a handful.
MAX_INVOICE_CAS_ATTEMPTS = 50


class Optimistic(LockStrategy):
    name = "optimistic"
    summary = "version column; UPDATE ... WHERE version = :v; reload and re-check on conflict"
    # versioned claim, then read + compare-and-set on the invoice, then effects
    statements_per_capture = 7

    async def write_capture(
        self, tx: Tx, payment: PaymentRow, capture: Capture
    ) -> InvoiceStatus | None:
        claimed = await tx.execute(
            CLAIM_PAYMENT_IF_VERSION,
            payment.id,
            capture.razorpay_payment_id,
            capture.via,
            payment.version,
        )
        if claimed != 1:
            return None
        status = await self._add_to_invoice(tx, payment.invoice_id, payment.amount)
        await tx.execute(
            WRITE_CAPTURE_EFFECTS,
            payment.id,
            payment.invoice_id,
            payment.amount,
            payment.status,
            capture.source,
        )
        return status

    async def write_failure(self, tx: Tx, payment: PaymentRow, source: str) -> bool:
        written = await tx.execute(
            WRITE_FAILURE_IF_VERSION, payment.id, source, payment.status, payment.version
        )
        return written == 1

    async def _add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        for _ in range(MAX_INVOICE_CAS_ATTEMPTS):
            total, paid = await self.read_invoice(tx, invoice_id)
            status = invoice_status(total, paid + amount)
            if await tx.execute(CAS_INVOICE, invoice_id, paid + amount, status.value, paid) == 1:
                return status
        raise DatabaseBusy(f"invoice {invoice_id}: amount_paid kept changing")


STRATEGY = Optimistic
