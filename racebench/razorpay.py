"""Razorpay's vocabulary, shared by the simulator (harness/gateway.py), the load generator, the
scenarios and the reference service: its webhook events by their wire names, and the fixed
test credentials that racebench signs with unless told otherwise.
"""

from __future__ import annotations

import os
from enum import StrEnum


class RazorpayEvent(StrEnum):
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_CAPTURED = "payment.captured"
    PAYMENT_FAILED = "payment.failed"
    ORDER_PAID = "order.paid"


# Razorpay auto-capture sends these three for one payment, in any order: each of them means the
# money is ours, and the first to arrive captures.
CAPTURE_EVENTS = (
    RazorpayEvent.PAYMENT_AUTHORIZED,
    RazorpayEvent.PAYMENT_CAPTURED,
    RazorpayEvent.ORDER_PAID,
)

# Events that say the money was captured: a service that acknowledges one (2xx) must hold the
# payment captured (the client ledger, ACKNOWLEDGED_LOST). payment.authorized says less.
SETTLED_EVENTS = (RazorpayEvent.PAYMENT_CAPTURED, RazorpayEvent.ORDER_PAID)

# Fixed test credentials: the reference service and the gateway simulator share them by
# default, and `racebench serve` prints them so that a hand-written client can sign requests.
DEFAULT_KEY_ID = "rzp_test_racebench"
DEFAULT_KEY_SECRET = "racebench_test_key_secret"
DEFAULT_WEBHOOK_SECRET = "racebench_test_webhook_secret"


def key_secret() -> str:
    """RAZORPAY_KEY_SECRET, else the test value (what the reference service reads too)."""
    return _env("RAZORPAY_KEY_SECRET") or DEFAULT_KEY_SECRET


def webhook_secret() -> str:
    """RAZORPAY_WEBHOOK_SECRET, else the test value (what the reference service reads too)."""
    return _env("RAZORPAY_WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET


def _env(name: str) -> str | None:
    # pydantic-settings (the reference service's Settings) reads names case-insensitively.
    return os.environ.get(name) or os.environ.get(name.lower())
