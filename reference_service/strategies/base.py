"""The one small interface every lock strategy implements.

A strategy decides how a capture claims the payment row and the invoice row it allocates to:
which lock it takes, and when. It does not decide what capturing means; that is
reference_service/capture.py, shared by every strategy and both paths.

The defaults here are the documents' BEFORE: read, check in Python, write. They guard nothing,
which is exactly the `none` strategy. A safe strategy overrides the steps it guards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import bindparam, func, select, update

from reference_service.db import Tx
from reference_service.models import InvoiceStatus, PaymentStatus, invoices, payments


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


_PAYMENT_COLUMNS = [getattr(payments.c, f) for f in PaymentRow.__slots__]  # type: ignore[attr-defined]
SELECT_PAYMENT = select(*_PAYMENT_COLUMNS).where(payments.c.id == bindparam("p_id"))
SELECT_PAYMENT_FOR_UPDATE = SELECT_PAYMENT.with_for_update()

# One UPDATE makes either transition; the captured_* fields are only set on a capture.
TRANSITION = (
    update(payments)
    .where(payments.c.id == bindparam("p_id"))
    .values(
        status=bindparam("p_to"),
        razorpay_payment_id=func.coalesce(
            bindparam("p_rzp_payment_id"), payments.c.razorpay_payment_id
        ),
        captured_via=func.coalesce(bindparam("p_via"), payments.c.captured_via),
        captured_at=func.coalesce(bindparam("p_captured_at"), payments.c.captured_at),
        version=payments.c.version + 1,
    )
)

SELECT_INVOICE = select(invoices.c.amount, invoices.c.amount_paid).where(
    invoices.c.id == bindparam("i_id")
)
SELECT_INVOICE_FOR_UPDATE = SELECT_INVOICE.with_for_update()
SET_INVOICE = (
    update(invoices)
    .where(invoices.c.id == bindparam("i_id"))
    .values(amount_paid=bindparam("i_paid"), status=bindparam("i_status"))
)


@dataclass(frozen=True, slots=True)
class Transition:
    """A payment status change, as `LockStrategy.transition` applies it."""

    to_status: PaymentStatus
    via: str | None = None
    razorpay_payment_id: str | None = None

    def params(self, payment: PaymentRow) -> dict[str, object]:
        capturing = self.to_status is PaymentStatus.CAPTURED
        return {
            "p_id": payment.id,
            "p_to": self.to_status.value,
            "p_rzp_payment_id": self.razorpay_payment_id,
            "p_via": self.via if capturing else None,
            "p_captured_at": _now() if capturing else None,
        }


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


class LockStrategy:
    """How a capture claims the payment and its invoice. Subclass, set `name`, register."""

    name: ClassVar[str]
    summary: ClassVar[str]
    safety: ClassVar[Safety] = Safety.SAFE
    # None: READ COMMITTED, PostgreSQL's default.
    isolation_level: ClassVar[str | None] = None
    # Re-run the whole transaction on SQLSTATE 40001/40P01 (see Database.run).
    retry_transaction: ClassVar[bool] = False

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        """Read the payment, holding whatever lock the strategy takes on it."""
        row = (await tx.execute(SELECT_PAYMENT, {"p_id": payment_id})).first()
        return PaymentRow(*row) if row else None

    async def transition(self, tx: Tx, payment: PaymentRow, change: Transition) -> bool:
        """Move the payment read as `payment` to a new status.

        Returns False when the strategy finds that another transaction got there first; the
        caller then reads the payment again and re-checks.
        """
        await tx.execute(TRANSITION, change.params(payment))
        return True

    async def add_to_invoice(self, tx: Tx, invoice_id: int, amount: int) -> InvoiceStatus:
        """Add `amount` to the invoice's amount_paid; return its new status."""
        return await self._read_modify_write_invoice(tx, invoice_id, amount, lock=False)

    async def _read_modify_write_invoice(
        self, tx: Tx, invoice_id: int, amount: int, *, lock: bool
    ) -> InvoiceStatus:
        query = SELECT_INVOICE_FOR_UPDATE if lock else SELECT_INVOICE
        total, paid = (await tx.execute(query, {"i_id": invoice_id})).one()
        status = invoice_status(total, paid + amount)
        await tx.execute(
            SET_INVOICE, {"i_id": invoice_id, "i_paid": paid + amount, "i_status": status.value}
        )
        return status
