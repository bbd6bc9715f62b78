"""Lock observation: the harness's own database connection, and what it sees of lock waits.

- `Monitor`: the harness's connection to the run database (clean the tables, sample
  pg_stat_activity, check the invariants). Its statements are bounded (statement_timeout).
- `LockSampler`: samples lock waits while a launch runs, as the timeline's intervals.
- `LockProbe`: the schedule's BlockProbe: is this actor (or anyone) blocked on a lock?
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import asyncpg

from racebench.harness.controller import ScheduleController
from racebench.harness.database import connect, parse_url
from racebench.harness.invariants import CheckResult, LedgerLog, Ledgers, check_connection
from racebench.harness.timeline import ENDING_WORDS, Timeline
from racebench.harness.white_box import Target
from racebench.reference_service import config
from racebench.results import LockWait

# Lock waits shorter than this may be missed by the timeline; shorter sampling would load the
# 2-core machine with pg_stat_activity queries.
LOCK_SAMPLE_INTERVAL_S = 0.005
# The monitor's statements take milliseconds (a few DELETEs, pg_stat_activity, the invariant
# queries); one that waits this long is stuck behind a lock a leftover transaction holds, and
# must fail the run instead of hanging it.
MONITOR_STATEMENT_TIMEOUT_MS = 10_000
# How long a fault step waits for a terminated backend to be gone (it takes milliseconds).
TERMINATE_WAIT_MS = 5_000
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


class Monitor:
    """The harness's own connection to the run database: clean, sample lock waits, check."""

    def __init__(self, conn: asyncpg.Connection, database_url: str = "") -> None:
        self.conn = conn
        self.database_url = database_url
        self._lock = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(cls, database_url: str) -> AsyncIterator[Monitor]:
        monitor = cls(await _connect(database_url), database_url)
        try:
            yield monitor
        finally:
            await monitor.conn.close()

    async def reconnect(self) -> None:
        """A new connection, after the server restarted under the old one (a fault step)."""
        async with self._lock:
            self.conn.terminate()
            self.conn = await _connect(self.database_url)

    async def lock_waiters(self) -> list[asyncpg.Record]:
        async with self._lock:
            return list(await self.conn.fetch(LOCK_WAITERS))

    async def terminate(self, pid: int) -> bool:
        """Faults: pg_terminate_backend(pid), waiting (bounded) until the backend is gone."""
        async with self._lock:
            killed: bool = await self.conn.fetchval(
                "SELECT pg_terminate_backend($1, $2)", pid, TERMINATE_WAIT_MS
            )
            return killed

    async def check_ledger(self, log: LedgerLog, ledgers: Ledgers) -> None:
        """One launch's acknowledgements against the database, now (LedgerLog.check)."""
        async with self._lock:
            await log.check(self.conn, ledgers)

    async def new_invoice(self, amount: int, currency: str = "INR") -> int:
        """An invoice of `amount` with no payment yet, straight into the contract's table (the
        API makes an invoice only with its first payment, of that payment's amount)."""
        async with self._lock:
            invoice_id: int = await self.conn.fetchval(
                "INSERT INTO invoices (amount, currency) VALUES ($1, $2) RETURNING id",
                amount,
                currency,
            )
            return invoice_id

    async def clean(self) -> None:
        async with self._lock:
            await self.conn.execute(CLEAN_TABLES)

    async def check(
        self, acknowledged_event_ids: Sequence[str], acknowledged_captures: Sequence[int] = ()
    ) -> CheckResult:
        async with self._lock:
            return await check_connection(
                self.conn,
                acknowledged_event_ids=acknowledged_event_ids,
                acknowledged_captures=acknowledged_captures,
            )


async def _connect(database_url: str) -> asyncpg.Connection:
    conn = await connect(parse_url(database_url))
    await conn.execute(f"SET statement_timeout = {MONITOR_STATEMENT_TIMEOUT_MS}")
    return conn


class LockProbe:
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
            return self.sampler.evidence(waiters[0])
        return None

    async def anyone_blocked(self) -> str | None:
        waiters = _held_up(await self.sampler.sample())
        if waiters:
            return self.sampler.evidence(waiters[0])
        if self.target.lock_waiting_task(""):
            return "on an asyncio.Lock (app_lock)"
        return None


# Waits whose blockers are the backends queued with it, not the lock's holder: a row's tuple
# lock is held by the first in line while it waits for the row's transaction, and passes on
# before that backend commits. Only the transaction (or advisory lock) it then waits on names
# a holder that keeps the lock until its COMMIT.
QUEUE_WAITS = frozenset({"Lock/tuple"})


def _roots(pid: int, waiting: dict[int, list[int]]) -> set[int]:
    """The backends that hold what `pid` waits for. pg_blocking_pids() also names waiters
    queued ahead of it (a row's tuple lock); those are followed to the holder they wait for."""
    roots: set[int] = set()
    seen = {pid}
    todo = list(waiting.get(pid, []))
    while todo:
        blocker = todo.pop()
        if blocker in seen:
            continue
        seen.add(blocker)
        if blocker in waiting:
            todo.extend(waiting[blocker])
        else:
            roots.add(blocker)
    return roots


def _held_up(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    """Waiters that someone still blocks (no blocker: the lock is being granted right now)."""
    return [row for row in rows if row["blocked_by"]]


# What a wait event is, in words: whose lock it is and until when it is held.
LOCK_WORDS = {
    "Lock/transactionid": "row lock (PostgreSQL's own, held until its COMMIT)",
    "Lock/tuple": "row lock (PostgreSQL's own, held until its COMMIT)",
    "Lock/advisory": "advisory lock (held until its COMMIT)",
    "Lock/relation": "table lock",
}


def statement_gist(query: str) -> str:
    """The statement that waits, in a few words: `UPDATE payments`, `SELECT ... FOR UPDATE`."""
    text = " ".join(query.split())
    if "pg_advisory" in text:
        return "pg_advisory_xact_lock"
    if re.search(r"\bFOR (NO KEY )?UPDATE\b", text) and not re.search(r"\bUPDATE \w+ SET", text):
        table = re.search(r"\bFROM (\w+)", text)
        return f"SELECT ... FROM {table.group(1)} FOR UPDATE" if table else "SELECT ... FOR UPDATE"
    found = re.search(r"\b(UPDATE \w+|INSERT INTO \w+|DELETE FROM \w+)", text)
    return found.group(1) if found else text[:30]


class LockSampler:
    """Samples lock waits while a launch runs, and turns them into the timeline's intervals."""

    def __init__(self, monitor: Monitor, timeline: Timeline) -> None:
        self.monitor, self.timeline = monitor, timeline
        self._open: dict[int, LockWait] = {}
        self._mine: list[LockWait] = []
        self._seen: dict[int, tuple[float, float]] = {}  # id(wait): first and last sample sent
        self._roots: dict[int, dict[int, float]] = {}  # id(wait): holder pid -> when seen
        self.in_flight: Callable[[], list[str]] = list
        """The actors running and not held; a lone one with a lone wait is its owner."""
        self.controller: ScheduleController | None = None
        """Who each backend served (the actors' reports): names waiters and holders."""

    def evidence(self, row: asyncpg.Record) -> str:
        """A waiter in words: which statement waits for whose lock, and why."""
        now = time.perf_counter()
        holders = [self._name_before(pid, now) for pid in row["blocked_by"]]
        kind = LOCK_WORDS.get(row["wait_event"], "lock")
        return (
            f"on {row['wait_event']}: {statement_gist(str(row['query']))} waits for "
            f"{', '.join(holders)}'s {kind}"
        )

    def _name_before(self, pid: int, at: float) -> str:
        name = self.controller.actor_before(pid, at) if self.controller is not None else None
        return name or f"pid {pid}"

    async def sample(self) -> list[asyncpg.Record]:
        sent = time.perf_counter()
        rows = await self.monitor.lock_waiters()
        now = self.timeline.ms(sent)
        seen = set()
        for row in rows:
            pid = row["pid"]
            seen.add(pid)
            wait = self._open.get(pid)
            if wait is None:
                running = self.in_flight()
                actor = running[0] if len(running) == 1 and len(rows) == 1 else f"pid {pid}"
                wait = LockWait(
                    actor=actor,
                    pid=pid,
                    start_ms=now,
                    end_ms=now,
                    wait_event=row["wait_event"],
                    query=str(row["query"]),
                )
                self._open[pid] = wait
                self._mine.append(wait)
                self.timeline.lock_waits.append(wait)
            first, _ = self._seen.get(id(wait), (sent, sent))
            self._seen[id(wait)] = (first, sent)
            roots = self._roots.setdefault(id(wait), {})
            if row["wait_event"] not in QUEUE_WAITS and row["wait_event"] == wait.wait_event:
                for holder in _roots(pid, {r["pid"]: list(r["blocked_by"]) for r in rows}):
                    roots.setdefault(holder, sent)
            wait.end_ms = now
            wait.blocked_by = sorted(set(wait.blocked_by) | set(row["blocked_by"]))
        for pid in list(self._open):
            if pid not in seen:
                del self._open[pid]
        return rows

    def finish(self) -> None:
        """After the launch: name each wait's actor and holders from the backends' reports,
        and end it when the lock was granted, not at the last sample that still saw it.

        A waiter's next report on its backend is its next step, which it took once it had the
        lock; a holder's next report is its own (its transaction was open when the wait was
        seen), up to its COMMIT."""
        controller = self.controller
        if controller is None:
            return
        for wait in self._mine:
            _, last = self._seen[id(wait)]
            holders = [
                controller.holder_on(pid, seen) for pid, seen in self._roots[id(wait)].items()
            ]
            wait.holders = list(dict.fromkeys(h.actor for h in holders if h is not None))
            nxt = controller.actor_on(wait.pid, last)
            if nxt is not None:
                wait.actor = nxt.actor
                wait.end_ms = max(wait.start_ms, self.timeline.ms(nxt.at))
            else:  # its transaction ended on that backend unreported (an unreporting service)
                wait.end_ms = self._unreported_end(wait)
            sends = [
                e.t_ms
                for e in self.timeline.events
                if e.actor == wait.actor and e.kind == "send" and e.t_ms <= wait.end_ms
            ]
            if sends and wait.start_ms < max(sends):
                wait.start_ms = max(sends)  # a sample sent just before the request

    def _unreported_end(self, wait: LockWait) -> float:
        """A wait whose backend reported nothing after it: it ended no earlier than its
        holders' COMMIT or ROLLBACK, and no later than its actor's next step (if it has a name)."""
        commits = [
            e.t_ms
            for e in self.timeline.events
            if e.actor in wait.holders and e.what in ENDING_WORDS and e.t_ms >= wait.start_ms
        ]
        end = max(wait.end_ms, min(commits)) if commits else wait.end_ms
        steps = [
            e.t_ms
            for e in self.timeline.events
            if e.actor == wait.actor and e.kind != "blocked" and e.t_ms >= end
        ]
        return min(steps) if steps and not commits else end

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_SAMPLE_INTERVAL_S)
