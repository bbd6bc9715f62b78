"""`optimistic`: compare-and-set on payments.version (and on the invoice's amount_paid);
on a conflict, read again and re-check."""

from __future__ import annotations

from reference_service.db import DatabaseBusy, Tx
from reference_service.models import InvoiceStatus
from reference_service.strategies.base import (
    SELECT_INVOICE,
    SET_INVOICE,
    TRANSITION,
    LockStrategy,
    PaymentRow,
    Transition,
    invoice_status,
)

# $6: the version this transaction read.
VERSIONED_TRANSITION = TRANSITION + " AND version = $6"
# $4: the amount_paid this transaction read.
CAS_INVOICE = SET_INVOICE + " AND amount_paid = $4"

# Each failed compare-and-set means another capture of this invoice committed in between;
# with N payments on one invoice at most N-1 can do that, and invoices here have a handful.
MAX_INVOICE_CAS_ATTEMPTS = 50


class Optimistic(LockStrategy):
    name = "optimistic"
    summary = "version column; UPDATE ... WHERE version = :v; reload and re-check on conflict"

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        updated = await tx.execute(VERSIONED_TRANSITION, *change.args(payment), payment.version)
        return updated == 1

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        for _ in range(MAX_INVOICE_CAS_ATTEMPTS):
            row = await tx.fetchrow(SELECT_INVOICE, invoice_id)
            assert row is not None, f"payment points at missing invoice {invoice_id}"
            total, paid = row
            status = invoice_status(total, paid + amount)
            if await tx.execute(CAS_INVOICE, invoice_id, paid + amount, status.value, paid) == 1:
                return status
        raise DatabaseBusy(f"invoice {invoice_id}: amount_paid kept changing")
