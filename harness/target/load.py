"""The benchmark's side of a target: its pool of payments, the requests Locust sends for them,
how an answer is read, and the check after a round.

A round's payments are made the way the target file says ([payment].sql, or [payment.http]),
written to a pool file (one JSON object a line: the values each payment's template returned),
and read by every Locust process. The load profiles (loadtests/profiles.py) address payments
by their index in that file, and `TargetCalls` builds the target's own checkout callback and
Razorpay's webhook for each, signed with the target's secrets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from racebench.harness.database import connect, parse_url
from racebench.harness.gateway import Gateway, hmac_sha256_hex
from racebench.harness.invariants import CheckResult, Ledgers, check_invariants
from racebench.harness.requests import Call
from racebench.harness.target.file import TargetSpec, render_json, render_sql, render_text
from racebench.razorpay import SETTLED_EVENTS

# The amount of every payment of a bench pool, in paise.
POOL_AMOUNT = 100_000
# Payments made over HTTP at once ([payment.http]), and connections making them with SQL (each
# in one transaction): a few round trips in flight keep PostgreSQL busy without crowding it.
HTTP_CONCURRENCY = 16
SQL_CONNECTIONS = 4
# A payment request answers in milliseconds; this only bounds a stuck service.
HTTP_TIMEOUT_S = 30.0
# How often making a pool says how far it got.
PROGRESS_EVERY = 500
JSON_HEADERS = {"Content-Type": "application/json"}

Progress = Callable[[int, int], None]


def write_pool(path: Path, payments: Sequence[dict[str, Any]]) -> None:
    """The pool file: one payment's values a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for values in payments:
            out.write(json.dumps(values, default=str) + "\n")


def read_pool(path: Path) -> list[dict[str, Any]]:
    with path.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


async def make_payments(
    spec: TargetSpec,
    database_url: str,
    base_url: str,
    count: int,
    *,
    prefix: str,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """`count` new payments through the target's template; their values, in order. Each gets
    Razorpay's ids (its order's payment id) made up here, so that every Locust process signs
    the same ones."""
    if spec.payment.sql is not None:
        made = await _by_sql(spec, database_url, count, prefix, progress)
    else:
        made = await _by_http(spec, base_url, count, prefix, progress)
    for values in made:
        for needed in ("payment_id", "order_id"):
            if needed not in values:
                raise RuntimeError(
                    f"[payment] must return {needed} (e.g. RETURNING id AS {needed})"
                )
        values["gateway_payment_id"] = f"pay_{prefix}{int(values['payment_id']):012d}"
    return made


def _template_values(prefix: str, n: int) -> dict[str, Any]:
    return {"run": prefix, "n": n, "amount": POOL_AMOUNT, "invoice_id": None}


async def _by_sql(
    spec: TargetSpec, database_url: str, count: int, prefix: str, progress: Progress | None
) -> list[dict[str, Any]]:
    """The payments made on SQL_CONNECTIONS connections at once, each in one transaction."""
    template = spec.payment.sql
    assert template is not None
    made: list[dict[str, Any] | None] = [None] * count
    numbers = iter(range(1, count + 1))
    done = 0

    async def worker() -> None:
        nonlocal done
        conn = await connect(parse_url(database_url))
        try:
            async with conn.transaction():
                for n in numbers:
                    values = _template_values(prefix, n)
                    row = await conn.fetchrow(render_sql(template, values))
                    if row is None:
                        raise RuntimeError("[payment].sql returned no row")
                    made[n - 1] = {**values, **{k: _plain(v) for k, v in dict(row).items()}}
                    done += 1
                    if progress is not None and done % PROGRESS_EVERY == 0:
                        progress(done, count)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(SQL_CONNECTIONS, count))))
    return [m for m in made if m is not None]


async def _by_http(
    spec: TargetSpec, base_url: str, count: int, prefix: str, progress: Progress | None
) -> list[dict[str, Any]]:
    call = spec.payment.http
    assert call is not None
    made: list[dict[str, Any] | None] = [None] * count
    numbers = iter(range(1, count + 1))
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:

        async def worker() -> None:
            for n in numbers:
                values = _template_values(prefix, n)
                response = await client.request(
                    call.method,
                    render_text(call.path, values),
                    json=render_json(call.json, values),
                )
                if not 200 <= response.status_code < 300:
                    raise RuntimeError(
                        f"[payment.http] answered {response.status_code}: {response.text[:200]}"
                    )
                body = response.json()
                for name, key in spec.payment.returns.items():
                    values[name] = body.get(key)
                made[n - 1] = values
                if progress is not None and n % PROGRESS_EVERY == 0:
                    progress(n, count)

        await asyncio.gather(*(worker() for _ in range(HTTP_CONCURRENCY)))
    return [m for m in made if m is not None]


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


class TargetCalls:
    """The profiles' calls, built as the target file says, for payments addressed by their
    index in the pool."""

    def __init__(self, spec: TargetSpec, payments: Mapping[int, dict[str, Any]]) -> None:
        self.spec = spec
        self.payments = payments
        self.gateway = Gateway(key_secret=spec.key_secret, webhook_secret=spec.webhook_secret)

    def verify(self, index: int) -> Call:
        values = dict(self.payments[index])
        message = f"{values['order_id']}|{values['gateway_payment_id']}".encode()
        values["signature"] = hmac_sha256_hex(self.spec.key_secret, message)
        call = self.spec.verify
        body = json.dumps(render_json(call.json, values), separators=(",", ":")).encode()
        return Call(
            "verify", render_text(call.path, values), body, JSON_HEADERS, int(values["payment_id"])
        )

    def webhook(self, index: int, event_type: str, event_id: str) -> Call:
        values = self.payments[index]
        delivery = self.gateway.event(
            event_type,
            order_id=str(values["order_id"]),
            amount=int(values.get("amount") or POOL_AMOUNT),
            payment_id=str(values["gateway_payment_id"]),
            event_id=event_id,
        )
        return Call(
            "webhook",
            self.spec.webhook_path,
            delivery.body,
            delivery.headers(),
            int(values["payment_id"]),
            delivery.event_id,
            event_type,
        )


@dataclass(frozen=True)
class Reading:
    """What one 2xx answer says: its outcome's name, and what the client was told."""

    outcome: str  # "verify:captured", "webhook:ignored", "verify:2xx"
    acked_payment: int | None  # a capture answered 2xx: this payment must be captured
    acked_event: str | None  # a webhook answered 2xx: this delivery was accepted


def read_answer(spec: TargetSpec, call: Call, content: bytes) -> Reading:
    """A 2xx answer, read with the target file's `acted` field (its value names the outcome)."""
    acted = spec.webhook.acted if call.kind == "webhook" else spec.verify.acted
    label = "2xx"
    if acted:
        try:
            body = json.loads(content or b"null")
        except ValueError:
            body = None
        field = next(iter(acted))
        label = str(body.get(field)) if isinstance(body, dict) else "not_json"
    settled = call.kind == "verify" or call.event_type in SETTLED_EVENTS
    return Reading(
        f"{call.kind}:{label}",
        call.payment_id if settled else None,
        call.event_id if call.kind == "webhook" else None,
    )


async def check_round(
    spec: TargetSpec,
    database_url: str,
    payment_ids: Sequence[int],
    acked_events: Sequence[str],
    acked_captures: Sequence[int],
) -> CheckResult:
    """The target's invariants on a round's payments, and the client ledger."""
    conn: asyncpg.Connection = await connect(parse_url(database_url))
    try:
        return await check_invariants(
            conn,
            spec.invariants,
            payments=list(payment_ids),
            ledgers=Ledgers(acked_events, acked_captures),
        )
    finally:
        await conn.close()
