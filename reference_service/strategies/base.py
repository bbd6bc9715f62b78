"""The one small interface every lock strategy implements.

A strategy decides how a capture claims the payment row and the invoice row it allocates to:
which lock it takes, and when. It does not decide what capturing means; that is
reference_service/capture.py, shared by every strategy and both paths.

The defaults here are the write-up's BEFORE: read, check in Python, write. They guard nothing,
which is exactly the `none` strategy. A safe strategy overrides the steps it guards: its reads
(a lock), or its writes (a condition).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Literal

from racebench.reference_service.db import Tx
from racebench.reference_service.models import InvoiceStatus
from racebench.reference_service.writes import WRITE_CAPTURE, WRITE_FAILURE


class Safety(StrEnum):
    """What a strategy promises about double capture."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    SINGLE_PROCESS = "single_process"  # safe only while one process serves every request


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: int
    invoice_id: int
    amount: int
    currency: str
    status: str
    razorpay_order_id: str
    razorpay_payment_id: str | None
    captured_via: str | None
    version: int


def invoice_status(amount: int, amount_paid: int) -> InvoiceStatus:
    if amount_paid >= amount:
        return InvoiceStatus.PAID
    return InvoiceStatus.PARTIALLY_PAID if amount_paid > 0 else InvoiceStatus.UNPAID


SELECT_PAYMENT = f"SELECT {', '.join(PaymentRow.__slots__)} FROM payments WHERE id = $1"  # type: ignore[attr-defined]
SELECT_PAYMENT_FOR_UPDATE = SELECT_PAYMENT + " FOR UPDATE"
SELECT_INVOICE = "SELECT amount, amount_paid FROM invoices WHERE id = $1"
SELECT_INVOICE_FOR_UPDATE = SELECT_INVOICE + " FOR UPDATE"


@dataclass(frozen=True, slots=True)
class Capture:
    """Who is capturing: what goes into the payment row and the audit event."""

    via: str  # payments.captured_via: "client" or "webhook"
    source: str  # payment_events.source: "client" or "webhook:<event id>"
    razorpay_payment_id: str | None


class LockStrategy:
    """How a capture claims the payment and its invoice. Subclass, set `name`, register.

    capture.py reads the payment with `read_payment`, checks its status, then calls
    `write_capture` (or `write_failure`). What the writes are is fixed (reference_service/
    writes.py); a strategy chooses the locks around them, or the condition they hang on.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    # SQL statements one uncontended capture sends, BEGIN and COMMIT included (a test counts
    # them). Keep it low: the capture path is benchmarked against pgbench's ceiling.
    statements_per_capture: ClassVar[int]
    safety: ClassVar[Safety] = Safety.SAFE
    # None: READ COMMITTED, PostgreSQL's default.
    isolation_level: ClassVar[Literal["serializable", "repeatable_read"] | None] = None
    # Re-run the whole transaction on SQLSTATE 40001/40P01 (see Database.run).
    retry_transaction: ClassVar[bool] = False

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        """Read the payment, holding whatever lock the strategy takes on it."""
        return await self._select_payment(tx, SELECT_PAYMENT, payment_id)

    async def read_invoice(self, tx: Tx, invoice_id: int) -> tuple[int, int]:
        """(amount, amount_paid) of the invoice, holding whatever lock the strategy takes."""
        return await self._select_invoice(tx, SELECT_INVOICE, invoice_id)

    async def write_capture(
        self, tx: Tx, payment: PaymentRow, capture: Capture
    ) -> InvoiceStatus | None:
        """Write the capture of `payment` as read; return the invoice's new status.

        None means another transaction got there first and nothing was written; the caller
        reads the payment again and re-checks. The default writes unconditionally, with the
        invoice's amount_paid computed from `read_invoice`: safe only under the strategy's
        locks, and a lost update without them (the write-up's BEFORE).
        """
        total, paid = await self.read_invoice(tx, payment.invoice_id)
        status = invoice_status(total, paid + payment.amount)
        await tx.execute(
            WRITE_CAPTURE,
            payment.id,
            capture.razorpay_payment_id,
            capture.via,
            payment.status,
            capture.source,
            payment.invoice_id,
            paid + payment.amount,
            status.value,
            payment.amount,
        )
        return status

    async def write_failure(self, tx: Tx, payment: PaymentRow, source: str) -> bool:
        """Move `payment` (as read) to failed; False if another transaction got there first."""
        return await tx.execute(WRITE_FAILURE, payment.id, source, payment.status) == 1

    @staticmethod
    async def _select_payment(tx: Tx, query: str, payment_id: int) -> PaymentRow | None:
        row = await tx.fetchrow(query, payment_id)
        return PaymentRow(*row) if row is not None else None

    @staticmethod
    async def _select_invoice(tx: Tx, query: str, invoice_id: int) -> tuple[int, int]:
        row = await tx.fetchrow(query, invoice_id)
        assert row is not None, f"a payment points at missing invoice {invoice_id}"
        return row["amount"], row["amount_paid"]
