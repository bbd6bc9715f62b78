"""Request and response bodies of the HTTP API (docs/contracts.md, HTTP API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from racebench.reference_service.models import AnsweredOutcome, PaymentStatus

# Ids are PostgreSQL bigints; a larger number is a client error, not a driver overflow.
MAX_ID = 2**63 - 1
# One crore rupees in paise, a thousand times over: far above any real checkout, far below
# the bigint sums an invoice can hold.
MAX_AMOUNT = 10**12


def _integral(value: object) -> object:
    """JSON's integer is any number without a fraction (JSON Schema, hence OpenAPI 3.1):
    13625.0 is 13625. A fraction, a string or a bool stays what it is, and is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral)
"""After a StrictInt's Field (so that its bounds stay JSON Schema's keywords): an integer as
JSON Schema means it, 5 and 5.0, never 5.5, "5" or true."""
Id = Annotated[StrictInt, Field(ge=1, le=MAX_ID), INTEGRAL]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT), INTEGRAL]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# Razorpay ids are a prefix, an underscore and alphanumerics; nothing else reaches a column.
RAZORPAY_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
RazorpayId = Annotated[str, Field(pattern=RAZORPAY_ID_PATTERN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PaymentCreate(_Request):
    amount: Amount
    currency: Currency = "INR"
    invoice_id: Id | None = None


class PaymentPublic(BaseModel):
    id: int
    invoice_id: int
    razorpay_order_id: str
    amount: int
    currency: str
    status: str


class PaymentDetail(BaseModel):
    id: int
    status: str
    invoice_id: int
    amount: int
    razorpay_order_id: str
    razorpay_payment_id: str | None
    captured_via: str | None
    captured_at: datetime | None


class VerifyRequest(_Request):
    internal_payment_id: Id
    razorpay_order_id: RazorpayId
    razorpay_payment_id: RazorpayId
    razorpay_signature: Annotated[str, Field(min_length=1, max_length=256)]


class VerifyPublic(BaseModel):
    id: int
    status: Literal[PaymentStatus.CAPTURED] = PaymentStatus.CAPTURED
    invoice_status: str
    replayed: bool


class InvoicePublic(BaseModel):
    id: int
    amount: int
    amount_paid: int
    status: str


class WebhookAck(BaseModel):
    status: AnsweredOutcome


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    strategy: str
    database: Literal["ok", "unavailable"]
