"""`conditional_update`: UPDATE ... WHERE status = <what we read> RETURNING; the winner does
the side effects, and the invoice is incremented in place."""

from __future__ import annotations

from reference_service.db import Tx
from reference_service.models import InvoiceStatus
from reference_service.strategies.base import TRANSITION, LockStrategy, PaymentRow, Transition

# $6: the status this transaction read. A concurrent winner has changed it, so we match 0 rows.
CONDITIONAL_TRANSITION = TRANSITION + " AND status = $6 RETURNING id"

# The row lock an UPDATE takes makes the increment atomic; status follows from the new sum.
INCREMENT_INVOICE = """
    UPDATE invoices
    SET amount_paid = amount_paid + $2,
        status = CASE WHEN amount_paid + $2 >= amount THEN 'paid'
                      WHEN amount_paid + $2 > 0 THEN 'partially_paid'
                      ELSE 'unpaid' END
    WHERE id = $1
    RETURNING status"""


class ConditionalUpdate(LockStrategy):
    name = "conditional_update"
    summary = "UPDATE ... WHERE status = :read_status RETURNING; winner does the side effects"

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        won = await tx.fetchval(CONDITIONAL_TRANSITION, *change.args(payment), payment.status)
        return won is not None

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        return InvoiceStatus(await tx.fetchval(INCREMENT_INVOICE, invoice_id, amount))
