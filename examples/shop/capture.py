"""The capture, written once and called by both paths (checkout callback and webhook).

SHOP_MODE=buggy is the ORM habit: load the payment, look at its status, change the object,
commit. Two requests that load it at the same time both see `created`, and both capture: two
receipts, and the invoice's paid total loses one of the two additions (a lost update).

SHOP_MODE=fixed loads the payment and its invoice with SELECT ... FOR UPDATE, so the second
request waits for the first to commit and then sees `captured`: the status is checked after
the lock. SHOP_MODE=early_claim captures like fixed; its bug is in the webhook route (app.py).

SHOP_MODE=reconcile_skew and SHOP_MODE=reconciled lock the payment like fixed, but not the
invoice: its paid total grows in one atomic UPDATE, and before it the capture reconciles the
invoice (its paid total must equal the sum of its captured payments, or it is disputed).
reconcile_skew reads the two in two statements under READ COMMITTED: a capture of another
payment of the invoice that commits between them is seen by the second read and not by the
first, and a consistent invoice is marked disputed (read skew). No barrier can force that: it
needs a COMMIT between two reads of one transaction (`racebench explore` schedules it).
reconciled reads both in one statement, one snapshot.

SHOP_TX_SLEEP_MS adds that much time inside the capture's transaction (after the reads, before
the commit): a knob for testing a performance gate, 0 by default.
"""

from __future__ import annotations

import os
import time
from typing import Any

from models import Invoice, Payment, Receipt
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

MODES = ("buggy", "fixed", "early_claim", "reconcile_skew", "reconciled")
MODE = os.environ.get("SHOP_MODE", "buggy")
if MODE not in MODES:
    raise SystemExit(f"SHOP_MODE must be one of {', '.join(MODES)}, not {MODE!r}")
LOCKED = MODE != "buggy"
RECONCILES = MODE.startswith("reconcile")
TX_SLEEP_S = float(os.environ.get("SHOP_TX_SLEEP_MS", "0") or 0) / 1000.0


def _payment(session: Session, gateway_order_id: str) -> Payment | None:
    query = select(Payment).where(Payment.gateway_order_id == gateway_order_id)
    if LOCKED:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def capture(session: Session, gateway_order_id: str, gateway_payment_id: str, source: str) -> str:
    """Capture the order's payment once. Returns captured, already_captured or unknown.
    A failed payment can still be captured (Razorpay reports a late capture after a failure).
    The caller commits."""
    payment = _payment(session, gateway_order_id)
    if payment is None:
        return "unknown"
    if RECONCILES:
        return _capture_reconciled(session, payment, gateway_payment_id, source)
    invoice = None
    if payment.invoice_id is not None:
        invoice = session.get(Invoice, payment.invoice_id, with_for_update=LOCKED)
    if TX_SLEEP_S:
        time.sleep(TX_SLEEP_S)
    if payment.status == "captured":
        return "already_captured"
    payment.status = "captured"
    payment.gateway_payment_id = gateway_payment_id
    payment.capture_count += 1
    if invoice is not None:
        invoice.paid_paise += payment.amount_paise
    session.add(Receipt(payment_id=payment.id, amount_paise=payment.amount_paise, source=source))
    return "captured"


def _captured_total(invoice_id: int) -> Any:
    return (
        select(func.coalesce(func.sum(Payment.amount_paise), 0))
        .where(Payment.invoice_id == invoice_id, Payment.status == "captured")
        .scalar_subquery()
    )


def _disputed(session: Session, invoice_id: int) -> bool:
    """The reconciliation: does the invoice's paid total differ from its captured payments?"""
    if MODE == "reconcile_skew":  # two statements, two snapshots under READ COMMITTED
        paid = session.scalar(select(Invoice.paid_paise).where(Invoice.id == invoice_id))
        captured = session.scalar(select(_captured_total(invoice_id)))
    else:  # one statement, one snapshot
        row = session.execute(
            select(Invoice.paid_paise, _captured_total(invoice_id)).where(Invoice.id == invoice_id)
        ).one()
        paid, captured = row
    return paid != captured


def _capture_reconciled(
    session: Session, payment: Payment, gateway_payment_id: str, source: str
) -> str:
    if payment.status == "captured":
        return "already_captured"
    disputed = payment.invoice_id is not None and _disputed(session, payment.invoice_id)
    payment.status = "captured"
    payment.gateway_payment_id = gateway_payment_id
    payment.capture_count += 1
    session.add(Receipt(payment_id=payment.id, amount_paise=payment.amount_paise, source=source))
    if payment.invoice_id is not None:
        session.execute(
            update(Invoice)
            .where(Invoice.id == payment.invoice_id)
            .values(
                paid_paise=Invoice.paid_paise + payment.amount_paise,
                disputed=Invoice.disputed | disputed,
            )
        )
    return "captured"


def mark_failed(session: Session, gateway_order_id: str) -> str:
    """payment.failed: a payment that is still `created` becomes failed; a captured one stays."""
    payment = _payment(session, gateway_order_id)
    if payment is None:
        return "unknown"
    if payment.status != "created":
        return "ignored"
    payment.status = "failed"
    return "failed"
