"""`conditional_update`: UPDATE ... WHERE status = <what we read> RETURNING; the winner does
the side effects, and the invoice is incremented in place."""

from __future__ import annotations

from sqlalchemy import bindparam, case, update

from reference_service.db import Tx
from reference_service.models import InvoiceStatus, invoices, payments
from reference_service.strategies.base import TRANSITION, LockStrategy, PaymentRow, Transition

CONDITIONAL_TRANSITION = TRANSITION.where(payments.c.status == bindparam("p_from"))

_new_paid = invoices.c.amount_paid + bindparam("i_amount")
INCREMENT_INVOICE = (
    update(invoices)
    .where(invoices.c.id == bindparam("i_id"))
    .values(
        amount_paid=_new_paid,
        status=case(
            (_new_paid >= invoices.c.amount, InvoiceStatus.PAID.value),
            (_new_paid > 0, InvoiceStatus.PARTIALLY_PAID.value),
            else_=InvoiceStatus.UNPAID.value,
        ),
    )
    .returning(invoices.c.status)
)


class ConditionalUpdate(LockStrategy):
    name = "conditional_update"
    summary = "UPDATE ... WHERE status = :read_status RETURNING; winner does the side effects"

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        params = change.params(payment) | {"p_from": payment.status}
        return (await tx.execute(CONDITIONAL_TRANSITION, params)).rowcount == 1

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        status = await tx.execute(INCREMENT_INVOICE, {"i_id": invoice_id, "i_amount": amount})
        return InvoiceStatus(status.scalar_one())
