"""Razorpay signature checks, through the razorpay SDK's own Utility."""

from __future__ import annotations

import razorpay
from razorpay.errors import SignatureVerificationError

from racebench.reference_service.errors import BodyNotUtf8, SignatureInvalid, SignatureMissing


class SignatureVerifier:
    """Checks checkout signatures (key secret) and webhook signatures (webhook secret)."""

    def __init__(self, key_id: str, key_secret: str, webhook_secret: str) -> None:
        self._utility = razorpay.Client(auth=(key_id, key_secret)).utility
        self._webhook_secret = webhook_secret

    def check_checkout(self, *, order_id: str, payment_id: str, signature: str) -> None:
        """Raise SignatureInvalid unless `signature` signs `order_id|payment_id`.

        `order_id` must be the one WE stored, not the one the client sent.
        """
        params = {
            "razorpay_order_id": order_id,
            "razorpay_payment_id": payment_id,
            "razorpay_signature": signature,
        }
        try:
            self._utility.verify_payment_signature(params)
        except (SignatureVerificationError, TypeError, ValueError):
            # TypeError: hmac.compare_digest refuses non-ASCII strings.
            raise SignatureInvalid("the checkout signature does not match") from None

    def check_webhook(self, raw_body: bytes, signature: str | None) -> str:
        """Check the signature over the raw body, exactly as received; return the body text."""
        if not signature:
            raise SignatureMissing("the X-Razorpay-Signature header is missing")
        try:
            text = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise BodyNotUtf8("the webhook body is not UTF-8") from None
        try:
            self._utility.verify_webhook_signature(text, signature, self._webhook_secret)
        except (SignatureVerificationError, TypeError, ValueError):
            raise SignatureInvalid("the webhook signature does not match the body") from None
        return text
