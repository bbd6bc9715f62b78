"""`optimistic`: compare-and-set on payments.version (and on the invoice's amount_paid);
on a conflict, read again and re-check."""

from __future__ import annotations

from sqlalchemy import bindparam

from reference_service.db import DatabaseBusy, Tx
from reference_service.models import InvoiceStatus, invoices, payments
from reference_service.strategies.base import (
    SELECT_INVOICE,
    SET_INVOICE,
    TRANSITION,
    LockStrategy,
    PaymentRow,
    Transition,
    invoice_status,
)

VERSIONED_TRANSITION = TRANSITION.where(payments.c.version == bindparam("p_version"))
CAS_INVOICE = SET_INVOICE.where(invoices.c.amount_paid == bindparam("i_expected"))

# Each failed compare-and-set means another capture of this invoice committed in between;
# with N payments on one invoice at most N-1 can do that, and invoices here have a handful.
MAX_INVOICE_CAS_ATTEMPTS = 50


class Optimistic(LockStrategy):
    name = "optimistic"
    summary = "version column; UPDATE ... WHERE version = :v; reload and re-check on conflict"

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        params = change.params(payment) | {"p_version": payment.version}
        return (await tx.execute(VERSIONED_TRANSITION, params)).rowcount == 1

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        for _ in range(MAX_INVOICE_CAS_ATTEMPTS):
            total, paid = (await tx.execute(SELECT_INVOICE, {"i_id": invoice_id})).one()
            status = invoice_status(total, paid + amount)
            params = {
                "i_id": invoice_id,
                "i_expected": paid,
                "i_paid": paid + amount,
                "i_status": status.value,
            }
            if (await tx.execute(CAS_INVOICE, params)).rowcount == 1:
                return status
        raise DatabaseBusy(f"invoice {invoice_id}: amount_paid kept changing")
