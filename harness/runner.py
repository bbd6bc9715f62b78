"""Runs one scenario against one target: barrier-synchronised launches, schedules, a verdict.

A scenario script drives a `Race`: it creates payments, builds requests (a checkout callback,
a webhook delivery) tagged with their actor, and launches them `together()` behind a barrier,
optionally under a schedule. The `Race` records the timeline, the webhook deliveries answered
2xx (for WEBHOOK_LOST), and the errors; `run_once()` cleans the tables first and checks the
invariants after.

The targets (in-process app, or `racebench serve` over HTTP) are in harness/targets.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from harness.database import connect, parse_url
from harness.gateway import Gateway, WebhookDelivery
from harness.invariants import CheckResult, check_connection
from harness.schedule import Jitter, Schedule, ScheduleController
from harness.targets import Target
from harness.timeline import LockWait, Timeline
from reference_service import config, race_points

# One whole scenario run (all its launches); a bound so that a bug cannot hang a CI job.
RUN_TIMEOUT_S = 60.0
# Lock waits shorter than this may be missed by the timeline; shorter sampling would load the
# 2-core machine with pg_stat_activity queries.
LOCK_SAMPLE_INTERVAL_S = 0.005
# The service's pooled connections carry this application_name.
SERVICE_APPLICATION_NAME = config.APPLICATION_NAME

LOCK_WAITERS = f"""
SELECT pid, wait_event_type || '/' || wait_event AS wait_event, query,
       pg_blocking_pids(pid) AS blocked_by
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = '{SERVICE_APPLICATION_NAME}'
  AND wait_event_type = 'Lock'
"""
# Children before parents; no TRUNCATE, whose ACCESS EXCLUSIVE lock and file churn cost more
# than deleting a few rows.
CLEAN_TABLES = """
DELETE FROM payment_allocations; DELETE FROM receipts; DELETE FROM payment_events;
DELETE FROM webhook_events; DELETE FROM payments; DELETE FROM invoices;
"""


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    invoice_id: int
    order_id: str
    amount: int
    currency: str = "INR"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of one actor."""

    actor: str
    method: str
    path: str
    json_body: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None  # a webhook delivery's X-Razorpay-Event-Id
    words: str = ""  # how the timeline names it


@dataclass(frozen=True, slots=True)
class Answer:
    actor: str
    status: int
    body: Any


class Monitor:
    """The harness's own connection to the run database: clean, sample lock waits, check."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, database_url: str) -> AsyncIterator[Monitor]:
        conn = await connect(parse_url(database_url))
        try:
            yield cls(conn)
        finally:
            await conn.close()

    async def lock_waiters(self) -> list[asyncpg.Record]:
        async with self._lock:
            return list(await self.conn.fetch(LOCK_WAITERS))

    async def clean(self) -> None:
        async with self._lock:
            await self.conn.execute(CLEAN_TABLES)

    async def check(self, acknowledged_event_ids: Sequence[str]) -> CheckResult:
        async with self._lock:
            return await check_connection(self.conn, acknowledged_event_ids=acknowledged_event_ids)


class _Probe:
    """BlockProbe over pg_stat_activity (and, in-process, the actors' asyncio tasks).

    PostgreSQL does not say which backend serves which actor, so the probe counts: the actors
    held at race points are idle in their transactions, so they cannot be lock waiters. If
    more backends wait on a lock than there are other actors in flight, the actor asked about
    is one of them. The count never blames an actor that is merely slow.
    """

    def __init__(self, target: Target, sampler: LockSampler) -> None:
        self.target, self.sampler = target, sampler

    async def blocked(self, actor: str, others_in_flight: int) -> str | None:
        if self.target.lock_waiting_task(actor):
            return "on an asyncio.Lock (app_lock)"
        waiters = _held_up(await self.sampler.sample())
        if len(waiters) > others_in_flight:
            return _evidence(waiters[0])
        return None

    async def anyone_blocked(self) -> str | None:
        waiters = _held_up(await self.sampler.sample())
        if waiters:
            return _evidence(waiters[0])
        if self.target.lock_waiting_task(""):
            return "on an asyncio.Lock (app_lock)"
        return None


def _held_up(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Waiters that someone still blocks (no blocker: the lock is being granted right now)."""
    return [row for row in rows if row["blocked_by"]]


def _evidence(row: asyncpg.Record) -> str:
    return f"on {row['wait_event']} (held by pid {', '.join(map(str, row['blocked_by']))})"


class LockSampler:
    """Samples lock waits while a launch runs, and turns them into the timeline's intervals."""

    def __init__(self, monitor: Monitor, timeline: Timeline) -> None:
        self.monitor, self.timeline = monitor, timeline
        self._open: dict[int, LockWait] = {}
        self.in_flight: Callable[[], list[str]] = list
        """The actors running and not held; a lone one with a lone wait is its owner."""

    async def sample(self) -> list[asyncpg.Record]:
        rows = await self.monitor.lock_waiters()
        now = round(self.timeline.now_ms(), 3)
        seen = set()
        for row in rows:
            pid = row["pid"]
            seen.add(pid)
            wait = self._open.get(pid)
            if wait is None:
                running = self.in_flight()
                actor = running[0] if len(running) == 1 and len(rows) == 1 else f"pid {pid}"
                wait = LockWait(actor, pid, now, now, row["wait_event"], str(row["query"]), [])
                self._open[pid] = wait
                self.timeline.lock_waits.append(wait)
            wait.end_ms = now
            wait.blocked_by = sorted(set(wait.blocked_by) | set(row["blocked_by"]))
        for pid in list(self._open):
            if pid not in seen:
                del self._open[pid]
        return rows

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_SAMPLE_INTERVAL_S)


class Race:
    """The API a scenario script uses: payments, requests with actor tags, launches."""

    def __init__(
        self,
        target: Target,
        monitor: Monitor,
        gateway: Gateway,
        *,
        use_schedules: bool = True,
        jitter_seed: str | None = None,
    ) -> None:
        self.target = target
        self.monitor = monitor
        self.gateway = gateway
        self.use_schedules = use_schedules
        self.jitter_seed = jitter_seed
        self.timeline = Timeline()
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self._launches = 0

    # -- building blocks -------------------------------------------------------------------

    async def payment(self, amount: int = 100_000, invoice_id: int | None = None) -> Payment:
        """A new pending payment (on a new invoice, or on `invoice_id`)."""
        body: dict[str, Any] = {"amount": amount, "currency": "INR"}
        if invoice_id is not None:
            body["invoice_id"] = invoice_id
        response = await self.target.client("setup").post("/payments", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /payments answered {response.status_code}: {response.text}")
        data = response.json()
        return Payment(data["id"], data["invoice_id"], data["razorpay_order_id"], amount)

    def verify(self, actor: str, payment: Payment) -> Request:
        """The customer's checkout callback for `payment` (POST /payments/verify)."""
        checkout = self.gateway.checkout(
            payment.id, payment.order_id, payment_id=f"pay_{payment.order_id[6:]}"
        )
        return Request(
            actor, "POST", "/payments/verify", json_body=checkout.body(), words="POST /verify"
        )

    def event(
        self, payment: Payment, event_type: str = "payment.captured", event_id: str | None = None
    ) -> WebhookDelivery:
        """A signed Razorpay event about `payment`."""
        return self.gateway.event(
            event_type,
            order_id=payment.order_id,
            amount=payment.amount,
            currency=payment.currency,
            payment_id=f"pay_{payment.order_id[6:]}",
            event_id=event_id,
        )

    def webhook(
        self, actor: str, payment: Payment, event_type: str = "payment.captured"
    ) -> Request:
        """Razorpay's webhook delivery of `event_type` for `payment`."""
        return self.deliver(actor, self.event(payment, event_type))

    def deliver(self, actor: str, delivery: WebhookDelivery) -> Request:
        """One HTTP delivery of a prepared event (deliver the same one twice: a duplicate)."""
        return Request(
            actor,
            "POST",
            "/webhooks/razorpay",
            content=delivery.body,
            headers=delivery.headers(),
            event_id=delivery.event_id,
            words=f"webhook {delivery.event_type}",
        )

    async def check(self) -> CheckResult:
        """Every invariant, on what this race has left in the database so far."""
        return await self.monitor.check(self.acknowledged)

    def fail(self, message: str) -> None:
        """A scenario's own expectation did not hold (an error, not a race)."""
        self.errors.append(message)
        self.timeline.add("-", message, "error")

    # -- launches --------------------------------------------------------------------------

    async def then(self, request: Request) -> Answer:
        """Send one request and wait for its answer (no concurrency)."""
        return (await self.together(request))[0]

    async def together(self, *requests: Request, schedule: Schedule | None = None) -> list[Answer]:
        """Send `requests` at the same instant (a barrier), under `schedule` if given."""
        self._launches += 1
        actors = [r.actor for r in requests]
        if len(set(actors)) != len(actors):
            raise ValueError(f"actor names must be unique in one launch: {actors}")
        await self.target.prepare(actors)
        if self._launches == 1:
            self.timeline.restart()  # time 0 is the first launch, not the setup before it
        sampler = LockSampler(self.monitor, self.timeline)
        jitter = (
            Jitter(f"{self.jitter_seed}|{self._launches}") if self.jitter_seed is not None else None
        )
        controller = ScheduleController(
            actors,
            schedule if self.use_schedules else None,
            self.timeline,
            _Probe(self.target, sampler),
            jitter,
            hold_strangers=self.target.anonymous(actors),
        )
        sampler.in_flight = controller.in_flight
        barrier = asyncio.Barrier(len(requests) + 1)
        stop = asyncio.Event()

        async def drive() -> None:
            await barrier.wait()
            await controller.drive()

        with self.target.installed(controller):
            sampling = asyncio.create_task(sampler.run(stop))
            driving = asyncio.create_task(drive())
            acting = [asyncio.create_task(self._act(r, controller, barrier)) for r in requests]
            try:
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    answers = await asyncio.gather(*acting)
                    await driving
            finally:
                for task in (*acting, driving):
                    task.cancel()
                stop.set()
                await asyncio.gather(sampling, driving, *acting, return_exceptions=True)
        if controller.stalled:
            self.errors.append(f"schedule stalled: {controller.stalled}")
        return answers

    async def _act(
        self, request: Request, controller: ScheduleController, barrier: asyncio.Barrier
    ) -> Answer:
        # This task's context is its own: the actor tag reaches the service's race points.
        race_points.current_actor.set(request.actor)
        task = asyncio.current_task()
        assert task is not None
        self.target.register_task(request.actor, task)
        await barrier.wait()
        await controller.may_start(request.actor)
        self.timeline.add(request.actor, f"sends {request.words}", "send")
        try:
            response = await self.target.client(request.actor).request(
                request.method,
                request.path,
                json=request.json_body,
                content=request.content,
                headers=request.headers,
            )
        except httpx.HTTPError as error:
            message = f"{request.words}: {type(error).__name__}: {error}"
            self.fail(f"{request.actor} {message}")
            return Answer(request.actor, 0, str(error))
        finally:
            controller.finished(request.actor)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        self.timeline.add(request.actor, f"answers {response.status_code} {_brief(body)}", "answer")
        if request.event_id is not None and 200 <= response.status_code < 300:
            self.acknowledged.append(request.event_id)
        if response.status_code >= 500:
            self.fail(f"{request.actor}: {request.words} answered {response.status_code} {body}")
        return Answer(request.actor, response.status_code, body)


def _brief(body: Any) -> str:
    """An answer in a few words: `captured (replay)`, `processed`, `signature_invalid`."""
    if isinstance(body, dict):
        if "error" in body and isinstance(body["error"], dict):
            return str(body["error"].get("code"))
        replay = " (replay)" if body.get("replayed") else ""
        return f"{body.get('status', '?')}{replay}"
    return str(body)[:40]


# -- one run -------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What one scenario run left behind."""

    check: CheckResult
    timeline: list[dict[str, Any]]
    errors: list[str]

    @property
    def violations(self) -> dict[str, int]:
        return dict(self.check.counts)

    @property
    def caught(self) -> bool:
        return not self.check.valid


async def run_once(
    script: Any,
    target: Target,
    monitor: Monitor,
    *,
    gateway: Gateway | None = None,
    use_schedules: bool = True,
    jitter_seed: str | None = None,
) -> RunOutcome:
    """Clean the tables, run `script(race)`, check every invariant."""
    race = await new_race(
        target, monitor, gateway=gateway, use_schedules=use_schedules, jitter_seed=jitter_seed
    )
    try:
        await script(race)
    except Exception as error:  # a broken run is reported as an error, never hidden
        race.fail(f"{type(error).__name__}: {error}")
    check = await race.check()
    race.timeline.note(_verdict_line(check))
    return RunOutcome(check, race.timeline.to_json(), race.errors)


def _plain(value: Any) -> Any:
    """sum() over bigints comes back as a Decimal; show 200000, not 2.0E+5."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _verdict_line(check: CheckResult) -> str:
    """The RESULT line under a timeline, with the first piece of evidence."""
    if check.valid:
        return "RESULT: exactly once, every invariant holds"
    parts = []
    for code in check.anomaly_types:
        first = check.anomalies[code][0]
        evidence = ", ".join(f"{k}={_plain(v)}" for k, v in first.items())
        parts.append(f"{code} x{check.counts[code]} ({evidence})")
    return "RESULT: " + "; ".join(parts)


async def new_race(
    target: Target,
    monitor: Monitor,
    *,
    gateway: Gateway | None = None,
    use_schedules: bool = True,
    jitter_seed: str | None = None,
) -> Race:
    """A Race on clean tables: what each run (and each plugin test) starts from."""
    await monitor.clean()
    return Race(
        target,
        monitor,
        gateway or Gateway(),
        use_schedules=use_schedules,
        jitter_seed=jitter_seed,
    )
