"""The gateway simulator's signatures are Razorpay's: the SDK accepts exactly what it signs."""

from __future__ import annotations

import pytest
import razorpay
from razorpay.errors import SignatureVerificationError

from racebench.harness.gateway import Gateway
from racebench.razorpay import (
    DEFAULT_KEY_ID,
    DEFAULT_KEY_SECRET,
    DEFAULT_WEBHOOK_SECRET,
)
from racebench.reference_service.errors import SignatureInvalid, SignatureMissing
from racebench.reference_service.signatures import SignatureVerifier


@pytest.fixture
def utility() -> razorpay.Utility:
    return razorpay.Client(auth=(DEFAULT_KEY_ID, DEFAULT_KEY_SECRET)).utility


@pytest.fixture
def verifier() -> SignatureVerifier:
    return SignatureVerifier(DEFAULT_KEY_ID, DEFAULT_KEY_SECRET, DEFAULT_WEBHOOK_SECRET)


def test_checkout_signature_is_accepted_by_the_sdk(utility, verifier) -> None:
    checkout = Gateway().checkout(1, "order_AbCdEfGhIjKlMn")
    assert utility.verify_payment_signature(checkout.body()) is True
    verifier.check_checkout(
        order_id=checkout.razorpay_order_id,
        payment_id=checkout.razorpay_payment_id,
        signature=checkout.razorpay_signature,
    )


def test_webhook_signature_is_accepted_by_the_sdk(utility, verifier) -> None:
    delivery = Gateway().event("payment.captured", order_id="order_AbCdEfGhIjKlMn", amount=5)
    body = delivery.body.decode()
    assert utility.verify_webhook_signature(body, delivery.signature, DEFAULT_WEBHOOK_SECRET)
    assert verifier.check_webhook(delivery.body, delivery.signature) == body


def test_what_the_sdk_rejects_the_service_rejects(utility, verifier) -> None:
    foreign = Gateway(key_secret="other", webhook_secret="other")
    checkout = foreign.checkout(1, "order_AbCdEfGhIjKlMn")
    with pytest.raises(SignatureVerificationError):
        utility.verify_payment_signature(checkout.body())
    with pytest.raises(SignatureInvalid):
        verifier.check_checkout(
            order_id=checkout.razorpay_order_id,
            payment_id=checkout.razorpay_payment_id,
            signature=checkout.razorpay_signature,
        )
    delivery = foreign.event("payment.captured", order_id="order_AbCdEfGhIjKlMn", amount=5)
    with pytest.raises(SignatureVerificationError):
        utility.verify_webhook_signature(
            delivery.body.decode(), delivery.signature, DEFAULT_WEBHOOK_SECRET
        )
    with pytest.raises(SignatureInvalid):
        verifier.check_webhook(delivery.body, delivery.signature)
    with pytest.raises(SignatureMissing):
        verifier.check_webhook(delivery.body, None)


def test_bad_signature_delivery_is_rejected_by_the_sdk(utility) -> None:
    delivery = Gateway().event("payment.failed", order_id="order_AbCdEfGhIjKlMn", amount=5)
    bad = delivery.with_bad_signature()
    assert bad.body == delivery.body
    with pytest.raises(SignatureVerificationError):
        utility.verify_webhook_signature(bad.body.decode(), bad.signature, DEFAULT_WEBHOOK_SECRET)
