"""`for_update`: SELECT ... FOR UPDATE, status checked after the lock (the write-up's AFTER)."""

from __future__ import annotations

from racebench.reference_service.db import Tx
from racebench.reference_service.strategies.base import (
    SELECT_INVOICE_FOR_UPDATE,
    SELECT_PAYMENT_FOR_UPDATE,
    LockStrategy,
    PaymentRow,
)


class ForUpdate(LockStrategy):
    name = "for_update"
    summary = "SELECT ... FOR UPDATE on the payment, then on the invoice"
    statements_per_capture = 5  # as `none`, each read FOR UPDATE

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        return await self._select_payment(tx, SELECT_PAYMENT_FOR_UPDATE, payment_id)

    async def read_invoice(self, tx: Tx, invoice_id: int) -> tuple[int, int]:
        return await self._select_invoice(tx, SELECT_INVOICE_FOR_UPDATE, invoice_id)


STRATEGY = ForUpdate
