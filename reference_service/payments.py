"""Creating payments, reading payments and invoices, and the checkout verification path."""

from __future__ import annotations

import secrets
import string
from typing import Any

from racebench.reference_service.capture import capture
from racebench.reference_service.db import Database, Tx
from racebench.reference_service.errors import (
    CurrencyMismatch,
    InvoiceNotFound,
    OrderMismatch,
    PaymentNotFound,
)
from racebench.reference_service.models import CaptureSource
from racebench.reference_service.schemas import (
    InvoicePublic,
    PaymentCreate,
    PaymentDetail,
    PaymentPublic,
    VerifyPublic,
    VerifyRequest,
)
from racebench.reference_service.signatures import SignatureVerifier
from racebench.reference_service.strategies import LockStrategy, PaymentRow

_ORDER_ID_ALPHABET = string.ascii_letters + string.digits
# Razorpay order ids are "order_" and 14 characters.
ORDER_ID_LENGTH = 14

# $1 amount, $2 currency, $3 order id.
INSERT_PAYMENT_WITH_NEW_INVOICE = """
    WITH invoice AS (
        INSERT INTO invoices (amount, currency) VALUES ($1, $2) RETURNING id
    )
    INSERT INTO payments (invoice_id, amount, currency, razorpay_order_id)
    SELECT id, $1, $2, $3 FROM invoice
    RETURNING id, invoice_id, status"""
# $1 amount, $2 currency, $3 order id, $4 invoice id.
INSERT_PAYMENT_FOR_INVOICE = """
    INSERT INTO payments (invoice_id, amount, currency, razorpay_order_id)
    SELECT id, $1::bigint, $2::varchar, $3 FROM invoices WHERE id = $4 AND currency = $2::varchar
    RETURNING id, invoice_id, status"""
SELECT_INVOICE_CURRENCY = "SELECT currency FROM invoices WHERE id = $1"
SELECT_PAYMENT_DETAIL = (
    f"SELECT {', '.join(PaymentDetail.model_fields)} FROM payments WHERE id = $1"
)
SELECT_INVOICE = f"SELECT {', '.join(InvoicePublic.model_fields)} FROM invoices WHERE id = $1"


def new_order_id() -> str:
    return "order_" + "".join(secrets.choice(_ORDER_ID_ALPHABET) for _ in range(ORDER_ID_LENGTH))


async def create_payment(db: Database, body: PaymentCreate) -> PaymentPublic:
    """A pending payment with its Razorpay order, on a new invoice or an existing one."""
    order_id = new_order_id()
    args = (body.amount, body.currency, order_id)

    async def work(tx: Tx) -> Any:
        if body.invoice_id is None:
            return await tx.fetchrow(INSERT_PAYMENT_WITH_NEW_INVOICE, *args)
        row = await tx.fetchrow(INSERT_PAYMENT_FOR_INVOICE, *args, body.invoice_id)
        if row is None:
            found = await tx.fetchval(SELECT_INVOICE_CURRENCY, body.invoice_id)
            if found is None:
                raise InvoiceNotFound(f"no invoice with id {body.invoice_id}")
            raise CurrencyMismatch(f"invoice {body.invoice_id} is in {found}, not {body.currency}")
        return row

    row = await db.run(work)
    return PaymentPublic(
        id=row["id"],
        invoice_id=row["invoice_id"],
        razorpay_order_id=order_id,
        amount=body.amount,
        currency=body.currency,
        status=row["status"],
    )


async def get_payment(db: Database, payment_id: int) -> PaymentDetail:
    async with db.connection() as conn:
        row = await conn.fetchrow(SELECT_PAYMENT_DETAIL, payment_id)
    if row is None:
        raise PaymentNotFound(f"no payment with id {payment_id}")
    return PaymentDetail.model_validate(dict(row))


async def get_invoice(db: Database, invoice_id: int) -> InvoicePublic:
    async with db.connection() as conn:
        row = await conn.fetchrow(SELECT_INVOICE, invoice_id)
    if row is None:
        raise InvoiceNotFound(f"no invoice with id {invoice_id}")
    return InvoicePublic.model_validate(dict(row))


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

    return await db.run(
        work,
        isolation=strategy.isolation_level,
        retry=strategy.retry_transaction,
        key=payment_key(body.razorpay_order_id),
    )


def payment_key(order_id: str) -> tuple[str, str]:
    """The key every request on one payment waits its turn on (Database.run), whatever its
    path: its Razorpay order id, the one thing a checkout callback and a webhook both carry
    before the transaction (one key, so one payment holds config.MAX_CONNECTIONS_PER_PAYMENT
    connections at most, not that many per path)."""
    return ("order", order_id)
