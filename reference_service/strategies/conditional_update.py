"""`conditional_update`: UPDATE ... WHERE status = <what we read> RETURNING; the winner does
the side effects (in the same statement), and the invoice is incremented in place."""

from __future__ import annotations

from racebench.reference_service.db import Tx
from racebench.reference_service.models import InvoiceStatus
from racebench.reference_service.strategies.base import Capture, LockStrategy, PaymentRow
from racebench.reference_service.writes import WRITE_CAPTURE_IF_STATUS, WRITE_FAILURE_IF_STATUS


class ConditionalUpdate(LockStrategy):
    name = "conditional_update"
    summary = "UPDATE ... WHERE status = :read_status RETURNING; winner does the side effects"
    statements_per_capture = 4  # BEGIN, read payment, one conditional statement, COMMIT

    async def write_capture(
        self, tx: Tx, payment: PaymentRow, capture: Capture
    ) -> InvoiceStatus | None:
        status = await tx.fetchval(
            WRITE_CAPTURE_IF_STATUS,
            payment.id,
            capture.razorpay_payment_id,
            capture.via,
            payment.status,
            capture.source,
        )
        return InvoiceStatus(status) if status is not None else None

    async def write_failure(self, tx: Tx, payment: PaymentRow, source: str) -> bool:
        return await tx.execute(WRITE_FAILURE_IF_STATUS, payment.id, source, payment.status) == 1


STRATEGY = ConditionalUpdate
