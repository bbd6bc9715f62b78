"""Plays Razorpay: payment ids, checkout signatures, and signed webhook events.

Events have Razorpay's own shape (`entity: "event"`, `payload.payment.entity`, and
`payload.order.entity` for order.paid). A webhook is signed over the exact bytes that are sent,
and carries its event id in the X-Razorpay-Event-Id header, as Razorpay's does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import time
from dataclasses import dataclass, field, replace
from typing import Any

from racebench import razorpay
from racebench.razorpay import RazorpayEvent

_ALPHABET = string.ascii_letters + string.digits
# Razorpay ids are a prefix and 14 characters.
ID_LENGTH = 14

# The payment entity's status in each event (Razorpay's payment statuses, not ours).
ENTITY_STATUS: dict[str, str] = {
    RazorpayEvent.PAYMENT_AUTHORIZED: "authorized",
    RazorpayEvent.PAYMENT_CAPTURED: "captured",
    RazorpayEvent.PAYMENT_FAILED: "failed",
    RazorpayEvent.ORDER_PAID: "captured",
}


def razorpay_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkout:
    """What Razorpay Checkout hands the customer's browser after a payment."""

    internal_payment_id: int
    razorpay_order_id: str
    razorpay_payment_id: str
    razorpay_signature: str

    def body(self) -> dict[str, Any]:
        return {
            "internal_payment_id": self.internal_payment_id,
            "razorpay_order_id": self.razorpay_order_id,
            "razorpay_payment_id": self.razorpay_payment_id,
            "razorpay_signature": self.razorpay_signature,
        }


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One HTTP delivery of an event: the exact bytes and the headers that go with them."""

    event_id: str
    event_type: str
    body: bytes
    signature: str

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Razorpay-Signature": self.signature,
            "X-Razorpay-Event-Id": self.event_id,
        }

    def with_bad_signature(self) -> WebhookDelivery:
        """The same delivery, signed with the wrong secret."""
        return replace(self, signature=hmac_sha256_hex("not-the-webhook-secret", self.body))


@dataclass
class Gateway:
    """A stand-in for Razorpay that signs with the service's secrets.

    By default they come from the same place the service reads them (RAZORPAY_KEY_SECRET and
    RAZORPAY_WEBHOOK_SECRET, else the fixed test values), so the two always agree.
    """

    key_secret: str = field(default_factory=razorpay.key_secret)
    webhook_secret: str = field(default_factory=razorpay.webhook_secret)
    account_id: str = field(default_factory=lambda: razorpay_id("acc"))

    def checkout(
        self, internal_payment_id: int, order_id: str, payment_id: str | None = None
    ) -> Checkout:
        """A correctly signed checkout callback for a payment of `order_id`."""
        payment_id = payment_id or razorpay_id("pay")
        signature = hmac_sha256_hex(self.key_secret, f"{order_id}|{payment_id}".encode())
        return Checkout(internal_payment_id, order_id, payment_id, signature)

    def event(
        self,
        event_type: str,
        *,
        order_id: str,
        amount: int,
        currency: str = "INR",
        payment_id: str | None = None,
        event_id: str | None = None,
    ) -> WebhookDelivery:
        """A signed webhook delivery of one event about one payment of `order_id`."""
        payment_id = payment_id or razorpay_id("pay")
        payment = {
            "id": payment_id,
            "entity": "payment",
            "amount": amount,
            "currency": currency,
            "status": ENTITY_STATUS.get(event_type, "captured"),
            "order_id": order_id,
            "method": "upi",
            "captured": ENTITY_STATUS.get(event_type) == "captured",
            "created_at": int(time.time()),
        }
        payload: dict[str, Any] = {"payment": {"entity": payment}}
        contains = ["payment"]
        if event_type == RazorpayEvent.ORDER_PAID:
            payload["order"] = {
                "entity": {
                    "id": order_id,
                    "entity": "order",
                    "amount": amount,
                    "amount_paid": amount,
                    "amount_due": 0,
                    "currency": currency,
                    "status": "paid",
                    "attempts": 1,
                }
            }
            contains.append("order")
        document = {
            "entity": "event",
            "account_id": self.account_id,
            "event": event_type,
            "contains": contains,
            "payload": payload,
            "created_at": int(time.time()),
        }
        return self.sign(json.dumps(document).encode(), event_type, event_id)

    def sign(
        self, body: bytes, event_type: str = "raw", event_id: str | None = None
    ) -> WebhookDelivery:
        """Sign arbitrary bytes as Razorpay would (for hand-made or malformed bodies)."""
        return WebhookDelivery(
            event_id=event_id or razorpay_id("evt"),
            event_type=event_type,
            body=body,
            signature=hmac_sha256_hex(self.webhook_secret, body),
        )
