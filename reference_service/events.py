"""The Razorpay webhook events the service acts on, by their wire names (docs/contracts.md).

An event type the service does not know is kept as it came (`webhook_events.event_type`) and
ignored; these are the ones with a meaning here, and the ones the harness and the load
generator send.
"""

from __future__ import annotations

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
