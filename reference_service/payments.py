"""Creating payments, reading payments and invoices, and the checkout verification path."""

from __future__ import annotations

import secrets
import string
from typing import Any

from sqlalchemy import bindparam, select, text

from reference_service.capture import capture
from reference_service.db import Database, Tx
from reference_service.errors import (
    CurrencyMismatch,
    InvoiceNotFound,
    OrderMismatch,
    PaymentNotFound,
)
from reference_service.models import CaptureSource, invoices, payments
from reference_service.schemas import (
    InvoicePublic,
    PaymentCreate,
    PaymentDetail,
    PaymentPublic,
    VerifyPublic,
    VerifyRequest,
)
from reference_service.signatures import SignatureVerifier
from reference_service.strategies import LockStrategy, PaymentRow

_ORDER_ID_ALPHABET = string.ascii_letters + string.digits
# Razorpay order ids are "order_" and 14 characters.
ORDER_ID_LENGTH = 14

INSERT_PAYMENT_WITH_NEW_INVOICE = text(
    """
    WITH invoice AS (
        INSERT INTO invoices (amount, currency) VALUES (:amount, :currency) RETURNING id
    )
    INSERT INTO payments (invoice_id, amount, currency, razorpay_order_id)
    SELECT id, :amount, :currency, :order_id FROM invoice
    RETURNING id, invoice_id, status
    """
)
INSERT_PAYMENT_FOR_INVOICE = text(
    """
    INSERT INTO payments (invoice_id, amount, currency, razorpay_order_id)
    SELECT id, CAST(:amount AS bigint), CAST(:currency AS varchar), :order_id FROM invoices
    WHERE id = :invoice_id AND currency = CAST(:currency AS varchar)
    RETURNING id, invoice_id, status
    """
)
SELECT_INVOICE_CURRENCY = select(invoices.c.currency).where(invoices.c.id == bindparam("i_id"))
SELECT_PAYMENT_DETAIL = select(*(getattr(payments.c, f) for f in PaymentDetail.model_fields)).where(
    payments.c.id == bindparam("p_id")
)
SELECT_INVOICE = select(*(getattr(invoices.c, f) for f in InvoicePublic.model_fields)).where(
    invoices.c.id == bindparam("i_id")
)


def new_order_id() -> str:
    return "order_" + "".join(secrets.choice(_ORDER_ID_ALPHABET) for _ in range(ORDER_ID_LENGTH))


async def create_payment(db: Database, body: PaymentCreate) -> PaymentPublic:
    """A pending payment with its Razorpay order, on a new invoice or an existing one."""
    order_id = new_order_id()
    params: dict[str, Any] = {
        "amount": body.amount,
        "currency": body.currency,
        "order_id": order_id,
    }

    async def work(tx: Tx) -> Any:
        if body.invoice_id is None:
            return (await tx.execute(INSERT_PAYMENT_WITH_NEW_INVOICE, params)).one()
        params["invoice_id"] = body.invoice_id
        row = (await tx.execute(INSERT_PAYMENT_FOR_INVOICE, params)).first()
        if row is None:
            currency = await tx.execute(SELECT_INVOICE_CURRENCY, {"i_id": body.invoice_id})
            found = currency.scalar_one_or_none()
            if found is None:
                raise InvoiceNotFound(f"no invoice with id {body.invoice_id}")
            raise CurrencyMismatch(f"invoice {body.invoice_id} is in {found}, not {body.currency}")
        return row

    row = await db.run(work)
    return PaymentPublic(
        id=row.id,
        invoice_id=row.invoice_id,
        razorpay_order_id=order_id,
        amount=body.amount,
        currency=body.currency,
        status=row.status,
    )


async def get_payment(db: Database, payment_id: int) -> PaymentDetail:
    async with db.engine.connect() as conn:
        row = (await conn.execute(SELECT_PAYMENT_DETAIL, {"p_id": payment_id})).first()
    if row is None:
        raise PaymentNotFound(f"no payment with id {payment_id}")
    return PaymentDetail.model_validate(row._asdict())


async def get_invoice(db: Database, invoice_id: int) -> InvoicePublic:
    async with db.engine.connect() as conn:
        row = (await conn.execute(SELECT_INVOICE, {"i_id": invoice_id})).first()
    if row is None:
        raise InvoiceNotFound(f"no invoice with id {invoice_id}")
    return InvoicePublic.model_validate(row._asdict())


async def verify_checkout(
    db: Database, strategy: LockStrategy, verifier: SignatureVerifier, body: VerifyRequest
) -> VerifyPublic:
    """The customer's checkout callback: check the signature, then capture."""

    def check(payment: PaymentRow) -> None:
        if payment.razorpay_order_id != body.razorpay_order_id:
            raise OrderMismatch(
                f"payment {payment.id} belongs to another order than {body.razorpay_order_id!r}"
            )
        # Against the STORED order id: a client cannot choose what it proves.
        verifier.check_checkout(
            order_id=payment.razorpay_order_id,
            payment_id=body.razorpay_payment_id,
            signature=body.razorpay_signature,
        )

    async def work(tx: Tx) -> VerifyPublic:
        result = await capture(
            tx,
            strategy,
            body.internal_payment_id,
            via=CaptureSource.CLIENT,
            source=CaptureSource.CLIENT.value,
            razorpay_payment_id=body.razorpay_payment_id,
            check=check,
        )
        return VerifyPublic(
            id=result.payment_id, invoice_status=result.invoice_status, replayed=result.replayed
        )

    return await db.run(work, isolation=strategy.isolation_level, retry=strategy.retry_transaction)
