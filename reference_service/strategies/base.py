"""The one small interface every lock strategy implements.

A strategy decides how a capture claims the payment row and the invoice row it allocates to:
which lock it takes, and when. It does not decide what capturing means; that is
reference_service/capture.py, shared by every strategy and both paths.

The defaults here are the documents' BEFORE: read, check in Python, write. They guard nothing,
which is exactly the `none` strategy. A safe strategy overrides the steps it guards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from reference_service.db import Tx
from reference_service.models import InvoiceStatus, PaymentStatus


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

# One UPDATE makes either transition; the captured_* fields are only set on a capture.
# Parameters: $1 id, $2 new status, $3 razorpay payment id, $4 captured_via, $5 captured_at.
TRANSITION = """
    UPDATE payments
    SET status = $2,
        razorpay_payment_id = coalesce($3, razorpay_payment_id),
        captured_via = coalesce($4, captured_via),
        captured_at = coalesce($5, captured_at),
        version = version + 1
    WHERE id = $1"""

SELECT_INVOICE = "SELECT amount, amount_paid FROM invoices WHERE id = $1"
SELECT_INVOICE_FOR_UPDATE = SELECT_INVOICE + " FOR UPDATE"
SET_INVOICE = "UPDATE invoices SET amount_paid = $2, status = $3 WHERE id = $1"


@dataclass(frozen=True, slots=True)
class Transition:
    """A payment status change, as `LockStrategy.transition` applies it."""

    to_status: PaymentStatus
    via: str | None = None
    razorpay_payment_id: str | None = None

    def args(self, payment: PaymentRow) -> tuple[Any, ...]:
        """The parameters $1..$5 of TRANSITION."""
        capturing = self.to_status is PaymentStatus.CAPTURED
        return (
            payment.id,
            self.to_status.value,
            self.razorpay_payment_id,
            self.via if capturing else None,
            datetime.now(UTC) if capturing else None,
        )


class LockStrategy:
    """How a capture claims the payment and its invoice. Subclass, set `name`, register."""

    name: ClassVar[str]
    summary: ClassVar[str]
    safety: ClassVar[Safety] = Safety.SAFE
    # None: READ COMMITTED, PostgreSQL's default.
    isolation_level: ClassVar[Literal["serializable", "repeatable_read"] | None] = None
    # Re-run the whole transaction on SQLSTATE 40001/40P01 (see Database.run).
    retry_transaction: ClassVar[bool] = False

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        """Read the payment, holding whatever lock the strategy takes on it."""
        return await self._select_payment(tx, SELECT_PAYMENT, payment_id)

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        """Move the payment read as `payment` to a new status.

        Returns False when the strategy finds that another transaction got there first; the
        caller then reads the payment again and re-checks.
        """
        await tx.execute(TRANSITION, *change.args(payment))
        return True

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        """Add `amount` to the invoice's amount_paid; return its new status."""
        return await self._read_modify_write_invoice(tx, invoice_id, amount, lock=False)

    @staticmethod
    async def _select_payment(tx: Tx, query: str, payment_id: int) -> PaymentRow | None:
        row = await tx.fetchrow(query, payment_id)
        return PaymentRow(*row) if row is not None else None

    @staticmethod
    async def _read_modify_write_invoice(
        tx: Tx, invoice_id: int, amount: int, *, lock: bool
    ) -> InvoiceStatus:
        row = await tx.fetchrow(SELECT_INVOICE_FOR_UPDATE if lock else SELECT_INVOICE, invoice_id)
        assert row is not None, f"payment points at missing invoice {invoice_id}"
        total, paid = row
        status = invoice_status(total, paid + amount)
        await tx.execute(SET_INVOICE, invoice_id, paid + amount, status.value)
        return status
