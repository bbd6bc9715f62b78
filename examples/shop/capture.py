"""The capture, written once and called by both paths (checkout callback and webhook).

SHOP_MODE=buggy is the ORM habit: load the payment, look at its status, change the object,
commit. Two requests that load it at the same time both see `created`, and both capture: two
receipts, and the invoice's paid total loses one of the two additions (a lost update).

SHOP_MODE=fixed loads the payment and its invoice with SELECT ... FOR UPDATE, so the second
request waits for the first to commit and then sees `captured`: the status is checked after
the lock. SHOP_MODE=early_claim captures like fixed; its bug is in the webhook route (app.py).

SHOP_TX_SLEEP_MS adds that much time inside the capture's transaction (after the reads, before
the commit): a knob for testing a performance gate, 0 by default.
"""

from __future__ import annotations

import os
import time

from models import Invoice, Payment, Receipt
from sqlalchemy import select
from sqlalchemy.orm import Session

MODES = ("buggy", "fixed", "early_claim")
MODE = os.environ.get("SHOP_MODE", "buggy")
if MODE not in MODES:
    raise SystemExit(f"SHOP_MODE must be one of {', '.join(MODES)}, not {MODE!r}")
LOCKED = MODE != "buggy"
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


def mark_failed(session: Session, gateway_order_id: str) -> str:
    """payment.failed: a payment that is still `created` becomes failed; a captured one stays."""
    payment = _payment(session, gateway_order_id)
    if payment is None:
        return "unknown"
    if payment.status != "created":
        return "ignored"
    payment.status = "failed"
    return "failed"
