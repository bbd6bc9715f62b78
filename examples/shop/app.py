"""shop: a small Flask payment service on PostgreSQL through the SQLAlchemy ORM.

Two ways to capture one payment: the customer's checkout callback (POST
/checkout/razorpay/callback) and Razorpay's webhook (POST /hooks/razorpay). Both call
capture.capture(). Signatures are checked with the razorpay SDK. It knows nothing of racebench.

    SHOP_DATABASE_URL=postgresql://postgres@127.0.0.1/shop SHOP_MODE=buggy \
        gunicorn -w 2 --threads 16 -b 127.0.0.1:8100 app:app
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import razorpay
from capture import MODE, capture, mark_failed
from flask import Flask, Response, request
from models import Base, WebhookEvent, WebhookLog
from razorpay.errors import SignatureVerificationError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

KEY_ID = os.environ.get("SHOP_KEY_ID", "rzp_test_shop")
KEY_SECRET = os.environ.get("SHOP_KEY_SECRET", "shop_key_secret")
WEBHOOK_SECRET = os.environ.get("SHOP_WEBHOOK_SECRET", "shop_webhook_secret")
CAPTURE_EVENTS = ("payment.captured", "order.paid")
# A capture gives up waiting for a row lock after this long: the webhook answers 503 and
# Razorpay retries later.
LOCK_TIMEOUT_MS = int(os.environ.get("SHOP_LOCK_TIMEOUT_MS", "2000"))


def engine_url(url: str) -> str:
    """The libpq URL with SQLAlchemy's psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise SystemExit(f"SHOP_DATABASE_URL must be a postgresql:// URL, not {url!r}")


engine = create_engine(
    engine_url(os.environ["SHOP_DATABASE_URL"]),
    pool_size=16,
    max_overflow=0,
    pool_timeout=10,
    connect_args={"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
)
Sessions = sessionmaker(engine, expire_on_commit=False)
gateway = razorpay.Client(auth=(KEY_ID, KEY_SECRET))
app = Flask(__name__)


def create_schema() -> None:
    """Idempotent; workers that start together take turns (an advisory lock)."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(8100)"))
        Base.metadata.create_all(conn)


def answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def refuse(status: int, code: str, message: str) -> Response:
    return answer({"error": {"code": code, "message": message}}, status)


@contextmanager
def transaction() -> Iterator[Session]:
    with Sessions() as session, session.begin():
        yield session


@app.errorhandler(DBAPIError)
def database_down(error: DBAPIError) -> Response:
    if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_timeout: someone holds the row
        response = refuse(503, "busy", "the payment is busy; retry")
    else:
        response = refuse(503, "database_unavailable", "the database did not answer; retry")
    response.headers["Retry-After"] = "1"
    return response


@app.get("/health")
def health() -> Response:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return answer({"status": "ok"})


def json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@app.post("/checkout/razorpay/callback")
def checkout_callback() -> Response:
    body = json_object(request.get_data())
    fields = ("razorpay_order_id", "razorpay_payment_id", "razorpay_signature")
    if body is None or not all(isinstance(body.get(f), str) and body[f] for f in fields):
        return refuse(400, "bad_request", f"a JSON object with {', '.join(fields)}")
    try:
        gateway.utility.verify_payment_signature({f: body[f] for f in fields})
    except SignatureVerificationError:
        return refuse(400, "bad_signature", "razorpay_signature does not match")
    with transaction() as session:
        outcome = capture(
            session, body["razorpay_order_id"], body["razorpay_payment_id"], "checkout"
        )
    if outcome == "unknown":
        return refuse(404, "unknown_order", "no payment for this order")
    return answer({"status": outcome})


@app.post("/hooks/razorpay")
def razorpay_webhook() -> Response:
    raw = request.get_data()
    try:
        text_body = raw.decode("utf-8")
        gateway.utility.verify_webhook_signature(
            text_body, request.headers.get("X-Razorpay-Signature", ""), WEBHOOK_SECRET
        )
    except (UnicodeDecodeError, SignatureVerificationError):
        return refuse(400, "bad_signature", "X-Razorpay-Signature does not match the body")
    event_id = request.headers.get("X-Razorpay-Event-Id", "")
    body = json_object(raw)
    try:
        event = body["event"] if body else None
        entity = body["payload"]["payment"]["entity"] if body else None
        order_id = entity["order_id"] if isinstance(entity, dict) else None
    except (KeyError, TypeError):
        event, entity, order_id = None, None, None
    if not event_id or not isinstance(event, str) or not isinstance(order_id, str):
        return refuse(400, "bad_event", "an event with payload.payment.entity and an event id")
    with transaction() as session:  # kept whatever happens next, in a transaction of its own
        session.add(WebhookLog(event_id=event_id[:64], body=text_body))
    if MODE == "early_claim":
        # The event id is claimed up front, in its own transaction, so that a redelivery that
        # comes while the capture runs is answered "duplicate" at once. The bug: a capture
        # that then fails leaves the claim behind, and Razorpay's retry is a "duplicate" too.
        try:
            with transaction() as session:
                session.add(WebhookEvent(event_id=event_id[:64], event=event[:32]))
        except IntegrityError:
            return answer({"status": "duplicate"})
        with transaction() as session:
            outcome = act(session, event, order_id, entity)
        return answer({"status": outcome})
    try:
        with transaction() as session:
            session.add(WebhookEvent(event_id=event_id[:64], event=event[:32]))
            session.flush()  # a redelivery stops here (the event id is taken)
            outcome = act(session, event, order_id, entity)
    except IntegrityError:
        return answer({"status": "duplicate"})
    return answer({"status": outcome})


def act(session: Session, event: str, order_id: str, entity: dict[str, Any]) -> str:
    """What an event does to its payment."""
    if event in CAPTURE_EVENTS:
        return capture(session, order_id, str(entity.get("id", "")), "webhook")
    if event == "payment.failed":
        return mark_failed(session, order_id)
    return "ignored"


create_schema()

if __name__ == "__main__":
    import sys

    app.run(host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8100, threaded=True)
