"""`advisory`: pg_advisory_xact_lock on the payment (then on the invoice) before reading it."""

from __future__ import annotations

from racebench.reference_service.db import Tx
from racebench.reference_service.strategies.base import LockStrategy, PaymentRow

# Payments and invoices share PostgreSQL's one advisory keyspace: a namespace in the top byte
# keeps payment 7 and invoice 7 apart (ids stay below 2**56).
PAYMENT_NAMESPACE = 1 << 56
INVOICE_NAMESPACE = 2 << 56

ADVISORY_LOCK = "SELECT pg_advisory_xact_lock($1)"


class Advisory(LockStrategy):
    name = "advisory"
    summary = "pg_advisory_xact_lock(payment), then (invoice), before reading either"
    statements_per_capture = 7  # two pg_advisory_xact_lock calls on top of `none`

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        # Lock first, then read in a new statement: a read in the same statement would use a
        # snapshot taken before the wait and could still see "pending".
        await tx.execute(ADVISORY_LOCK, PAYMENT_NAMESPACE | payment_id)
        return await super().read_payment(tx, payment_id)

    async def read_invoice(self, tx: Tx, invoice_id: int) -> tuple[int, int]:
        await tx.execute(ADVISORY_LOCK, INVOICE_NAMESPACE | invoice_id)
        return await super().read_invoice(tx, invoice_id)


STRATEGY = Advisory
