"""A tiny payment service that racebench did not write for itself, for target mode's tests:
Flask (threaded) on psycopg, its own schema. MINI_SHOP_MODE=buggy reads then saves (the ORM
habit); fixed takes the row locks (SELECT ... FOR UPDATE). It does not import racebench."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask, Response, request

KEY_SECRET = "mini_key_secret"
WEBHOOK_SECRET = "mini_webhook_secret"
DATABASE_URL = os.environ["MINI_SHOP_DATABASE_URL"]
FIXED = os.environ.get("MINI_SHOP_MODE", "buggy") == "fixed"
LOCK = " FOR UPDATE" if FIXED else ""

SCHEMA = """
CREATE TABLE IF NOT EXISTS mini_invoice (
    id bigserial PRIMARY KEY, total_paise bigint NOT NULL, paid_paise bigint NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS mini_payment (
    id bigserial PRIMARY KEY, order_ref text NOT NULL, gateway_order_id text UNIQUE NOT NULL,
    amount_paise bigint NOT NULL, status text NOT NULL, invoice_id bigint,
    capture_count int NOT NULL DEFAULT 0, gateway_payment_id text);
CREATE TABLE IF NOT EXISTS mini_webhook_event (event_id text PRIMARY KEY);
"""

app = Flask(__name__)


# At most this many requests talk to the database at once (a pool's size); the rest wait.
CONNECTIONS = threading.BoundedSemaphore(10)


@contextmanager
def db() -> Iterator[psycopg.Connection[Any]]:
    with CONNECTIONS, psycopg.connect(DATABASE_URL) as conn:
        yield conn


def answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def capture(conn: psycopg.Connection[Any], order_id: str, gateway_payment_id: str) -> str:
    row = conn.execute(
        f"SELECT id, status, amount_paise, invoice_id FROM mini_payment "
        f"WHERE gateway_order_id = %s{LOCK}",
        (order_id,),
    ).fetchone()
    if row is None:
        return "unknown"
    payment_id, status, amount, invoice_id = row
    if status == "captured":
        return "already"
    paid = None
    if invoice_id is not None:
        paid = conn.execute(
            f"SELECT paid_paise FROM mini_invoice WHERE id = %s{LOCK}", (invoice_id,)
        ).fetchone()[0]
    conn.execute(
        "UPDATE mini_payment SET status = 'captured', capture_count = capture_count + 1,"
        " gateway_payment_id = %s WHERE id = %s",
        (gateway_payment_id, payment_id),
    )
    if invoice_id is not None:
        conn.execute(
            "UPDATE mini_invoice SET paid_paise = %s WHERE id = %s", (paid + amount, invoice_id)
        )
    return "captured"


@app.get("/health")
def health() -> Response:
    return answer({"ok": True})


@app.post("/pay/callback")
def callback() -> Response:
    body = request.get_json(force=True)
    expected = hmac.new(
        KEY_SECRET.encode(),
        f"{body['razorpay_order_id']}|{body['razorpay_payment_id']}".encode(),
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, body["razorpay_signature"]):
        return answer({"error": "bad signature"}, 400)
    with db() as conn:
        outcome = capture(conn, body["razorpay_order_id"], body["razorpay_payment_id"])
    return answer({"status": outcome}, 404 if outcome == "unknown" else 200)


@app.post("/hooks/razorpay")
def webhook() -> Response:
    raw = request.get_data()
    expected = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("X-Razorpay-Signature", "")):
        return answer({"error": "bad signature"}, 400)
    event = json.loads(raw)
    entity = event["payload"]["payment"]["entity"]
    with db() as conn:
        claimed = conn.execute(
            "INSERT INTO mini_webhook_event VALUES (%s) ON CONFLICT DO NOTHING",
            (request.headers["X-Razorpay-Event-Id"],),
        ).rowcount
        if not claimed:
            return answer({"status": "duplicate"})
        if event["event"] in ("payment.captured", "order.paid"):
            return answer({"status": capture(conn, entity["order_id"], entity["id"])})
        if event["event"] == "payment.failed":
            status = conn.execute(
                f"SELECT status FROM mini_payment WHERE gateway_order_id = %s{LOCK}",
                (entity["order_id"],),
            ).fetchone()
            if status is not None and status[0] == "created":
                conn.execute(
                    "UPDATE mini_payment SET status = 'failed' WHERE gateway_order_id = %s",
                    (entity["order_id"],),
                )
        return answer({"status": "ok"})


if __name__ == "__main__":
    with db() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute(SCHEMA)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
