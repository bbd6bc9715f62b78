"""The OpenAPI document (/openapi.json) as the API really answers (docs/contracts.md, HTTP API).

FastAPI alone documents each operation's success and a 422 in its own HTTPValidationError
shape. The service answers every error in one shape (errors.py), refuses large bodies in a
middleware (413), answers 503 when the database cannot serve, reads the webhook body raw and
refuses a webhook without its two headers. This module says so, from outside the routes:
`install_openapi(app)` replaces `app.openapi` with a generator that documents, for every
operation, the status codes it can answer, the webhook's body and its required headers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, RootModel

from racebench.razorpay import RazorpayEvent
from racebench.reference_service import config
from racebench.reference_service.schemas import MAX_ID, RAZORPAY_ID_PATTERN, Health
from racebench.reference_service.webhooks import EVENT_TYPE_PATTERN, MAX_EVENT_ID_LENGTH

WEBHOOK_PATH = "/webhooks/razorpay"
SIGNATURE_HEADER = "X-Razorpay-Signature"
EVENT_ID_HEADER = "X-Razorpay-Event-Id"


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. `signature_invalid`.")
    message: str = Field(description="What went wrong, for a human.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="More about the error when there is more (absent otherwise).",
    )


class ErrorBody(BaseModel):
    """Every error the service answers: `{"error": {"code", "message", "details"?}}`."""

    error: ErrorDetail


# --- the webhook's body: a Razorpay event (read raw; documented here for clients) --------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# Fields Razorpay sends that the service does not read: documented, and any value is accepted
# (the schema says only what the service checks, so a schema-valid body is never refused for
# them and a schema-violating one is never accepted).
def _unread(example: object) -> Any:
    return Field(None, description="Sent by Razorpay; not read.", examples=[example])


class RazorpayPaymentEntity(_Open):
    id: Annotated[str, Field(pattern=RAZORPAY_ID_PATTERN)]
    entity: Any = _unread("payment")
    order_id: Annotated[str, Field(pattern=RAZORPAY_ID_PATTERN)]
    amount: Annotated[int, Field(ge=0, description="In the smallest unit (paise).")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    status: Any = _unread("captured")


class RazorpayOrderEntity(_Open):
    id: Annotated[str, Field(pattern=RAZORPAY_ID_PATTERN)]
    entity: Any = _unread("order")
    amount: Annotated[int, Field(ge=0)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class RazorpayPaymentWrapper(_Open):
    entity: RazorpayPaymentEntity


class RazorpayOrderWrapper(_Open):
    entity: RazorpayOrderEntity


class RazorpayPaymentPayload(_Open):
    payment: RazorpayPaymentWrapper


class RazorpayOrderPaidPayload(_Open):
    order: RazorpayOrderWrapper
    payment: RazorpayPaymentWrapper | None = Field(
        None, description="The payment that paid the order, when Razorpay includes it."
    )


class _Event(_Open):
    entity: Any = _unread("event")
    account_id: Any = _unread("acc_BFQ7uQEaa7j2z7")
    contains: Any = _unread(["payment"])
    created_at: Any = _unread(1700000000)


class RazorpayPaymentEvent(_Event):
    """`payment.authorized` and `payment.captured` capture, `payment.failed` fails: matched
    by the payment entity's order id."""

    event: Literal["payment.authorized", "payment.captured", "payment.failed"]
    payload: RazorpayPaymentPayload


class RazorpayOrderPaidEvent(_Event):
    """`order.paid` captures: matched by the order entity's id."""

    event: Literal["order.paid"]
    payload: RazorpayOrderPaidPayload


class RazorpayOtherEvent(_Event):
    """Any other event type is kept and answered `ignored`; its payload is not read."""

    event: Annotated[
        str,
        Field(
            pattern=EVENT_TYPE_PATTERN,
            json_schema_extra={"not": {"enum": [e.value for e in RazorpayEvent]}},
        ),
    ]
    payload: dict[str, Any]


class RazorpayWebhookEvent(
    RootModel[RazorpayPaymentEvent | RazorpayOrderPaidEvent | RazorpayOtherEvent]
):
    """A Razorpay webhook event, as the service checks it: a handled type must carry its
    entity, any other type only an object payload. The signature covers the body's bytes."""


# --- which operation answers what ----------------------------------------------------------

_DESCRIPTIONS = {
    400: "Missing or invalid signature (`signature_missing`, `signature_invalid`), missing "
    "event id (`event_id_missing`), a webhook body that is not UTF-8 (`body_not_utf8`), or a "
    "body that cannot be decoded at all (`http_error`)",
    404: "No such payment or invoice",
    409: "The request contradicts what is stored (order id or currency)",
    413: f"The body is larger than {config.MAX_BODY_BYTES} bytes (`body_too_large`)",
    422: "The request is malformed (`validation_error`, `payload_invalid`) or the event's "
    "amount differs from the payment's (`amount_mismatch`)",
    500: "A bug (`internal_error`); never expected",
    503: "The database cannot serve now (`busy`, `database_unavailable`); retry after "
    "`Retry-After` seconds",
}

# Codes every operation can answer: the body limit, bad input, an unavailable database.
_EVERY = (413, 422, 503)
ERROR_CODES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/payments"): (400, 404, 409, *_EVERY),
    ("post", "/payments/verify"): (400, 404, 409, *_EVERY),
    ("get", "/payments/{payment_id}"): (404, *_EVERY),
    ("get", "/invoices/{invoice_id}"): (404, *_EVERY),
    ("post", WEBHOOK_PATH): (400, *_EVERY),
    ("get", "/healthz"): (413,),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _retry_after() -> dict[str, Any]:
    return {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string"},
        }
    }


def _add_models(schema: dict[str, Any], *models: type[BaseModel]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in generated.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = generated


def _error_responses(codes: tuple[int, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in codes:
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": _json(_ref("ErrorBody")),
        }
        if status == 503:
            response["headers"] = _retry_after()
        responses[str(status)] = response
    return responses


def _webhook_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "description": "Hex HMAC-SHA256 of the raw body with the webhook secret.",
            "schema": {"type": "string", "minLength": 1},
        },
        {
            "name": EVENT_ID_HEADER,
            "in": "header",
            "required": True,
            "description": "Razorpay's id of this event; deliveries are deduplicated by it.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_LENGTH},
        },
    ]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the real responses, the webhook body and its headers."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    _add_models(schema, ErrorBody, RazorpayWebhookEvent)
    schemas = schema["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for (method, path), codes in ERROR_CODES.items():
        operation = schema["paths"][path][method]
        responses = operation["responses"]
        responses.pop("422", None)  # FastAPI's HTTPValidationError: not what is answered
        responses.update(_error_responses(codes))
    health = schema["paths"]["/healthz"]["get"]["responses"]
    health["503"] = {
        "description": "The database does not answer (`degraded`)",
        "content": _json(_ref(Health.__name__)),
    }
    webhook = schema["paths"][WEBHOOK_PATH]["post"]
    webhook["parameters"] = _webhook_parameters()
    webhook["requestBody"] = {
        "required": True,
        "description": "The event exactly as Razorpay sends it; read raw and verified against "
        f"{SIGNATURE_HEADER} before it is parsed.",
        "content": _json(_ref(RazorpayWebhookEvent.__name__)),
    }
    _exact_integer_bounds(schema)
    return schema


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _exact_integer_bounds(node: Any) -> None:
    """FastAPI's document model keeps numeric bounds as floats, and the bigint limit 2**63 - 1
    rounds up to 2**63: a schema-valid id the service must refuse. An integer's bounds are
    written back as the integers they are."""
    if isinstance(node, list):
        for item in node:
            _exact_integer_bounds(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "integer":
        for key in _BOUNDS:
            value = node.get(key)
            if isinstance(value, float) and value.is_integer():
                node[key] = MAX_ID if value == float(MAX_ID) else int(value)
    for child in node.values():
        _exact_integer_bounds(child)


def install_openapi(app: FastAPI) -> None:
    """Serve build_openapi(app) at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
