"""The barrier: force a race in a service whose code we cannot change, with PostgreSQL alone.

The harness opens its own transaction and takes `LOCK TABLE <the capture tables> IN SHARE
MODE`. Plain reads pass it, and so do `SELECT ... FOR UPDATE` row locks (ROW SHARE does not
conflict with SHARE); every INSERT, UPDATE or DELETE on those tables waits. So every actor
reads `pending` and then waits at its first write. Once every actor is held back (a backend
waiting on the barrier, directly or behind another backend that is) or has answered, the
harness rolls back, and PostgreSQL's lock queue lets them go in the order they came.

The barrier connection is the only thing that holds the lock: closing it (any exit, Ctrl-C,
SIGTERM, a crash) releases it, and `idle_in_transaction_session_timeout` bounds it on the
server side should this process hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from racebench.harness.database import DatabaseError, connect, parse_url
from racebench.harness.timeline import Timeline
from racebench.results import LockWait

# How long the barrier waits for every actor to be held back or answered; past it, the
# barrier lets go (an actor stuck elsewhere, e.g. in an in-process lock) and says so.
HOLD_TIMEOUT_S = 3.0
# A transaction holding the barrier is never idle longer than this (the harness polls every
# few ms): the server ends it if the harness hangs or dies without closing its socket.
SERVER_SIDE_TIMEOUT = "30s"
# How long taking the barrier may wait for the tables (a long transaction of someone else's).
LOCK_TIMEOUT = "5s"
POLL_INTERVAL_S = 0.002

_WAITING = """
SELECT pid, pg_blocking_pids(pid) AS blocked_by, wait_event_type, wait_event,
       left(query, 120) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
"""


class BarrierError(RuntimeError):
    """The barrier cannot be taken (a missing table, a user without the privilege)."""


@dataclass(frozen=True)
class HeldBack:
    pid: int
    blocked_by: tuple[int, ...]
    wait_event: str
    query: str


def explain_lock_error(error: asyncpg.PostgresError, tables: tuple[str, ...], user: str) -> str:
    code = getattr(error, "sqlstate", "")
    if code == "42P01":
        return (
            f"a barrier table is missing from the database: {error}. Check "
            f"[database].barrier_tables ({', '.join(tables)}) and that the service created them."
        )
    if code == "42501":
        return (
            f"the database user {user!r} cannot take the barrier lock (LOCK TABLE ... IN SHARE "
            f"MODE needs UPDATE, DELETE or TRUNCATE on {', '.join(tables)}): {error}. Grant it, "
            f"e.g. GRANT UPDATE ON {', '.join(tables)} TO {user};"
        )
    if code == "55P03":
        return f"the barrier could not take {', '.join(tables)} within {LOCK_TIMEOUT}: {error}"
    return f"the barrier lock failed: {type(error).__name__}: {error}"


class Barrier:
    """One connection that takes and lets go of the barrier, launch after launch."""

    def __init__(self, conn: asyncpg.Connection, tables: tuple[str, ...], user: str) -> None:
        self.conn = conn
        self.tables = tables
        self.user = user
        self.pid: int = conn.get_server_pid()
        self.holding = False

    @classmethod
    @asynccontextmanager
    async def open(cls, database_url: str, tables: tuple[str, ...]) -> AsyncIterator[Barrier]:
        url = parse_url(database_url)
        conn = await connect(url)
        try:
            await conn.execute(
                f"SET idle_in_transaction_session_timeout = '{SERVER_SIDE_TIMEOUT}'; "
                f"SET lock_timeout = '{LOCK_TIMEOUT}'"
            )
            yield cls(conn, tables, url.username or "")
        finally:
            # Closing the connection ends its transaction: the lock is gone whatever happened.
            try:
                await conn.close(timeout=2)
            except BaseException:
                conn.terminate()
                raise

    async def hold(self) -> None:
        """BEGIN; LOCK TABLE ... IN SHARE MODE (BarrierError says why it could not)."""
        tables = ", ".join(self.tables)
        try:
            await self.conn.execute(f"BEGIN; LOCK TABLE {tables} IN SHARE MODE")
        except asyncpg.PostgresError as error:
            if self.conn.is_in_transaction():
                await self.conn.execute("ROLLBACK")
            raise BarrierError(explain_lock_error(error, self.tables, self.user)) from None
        self.holding = True

    async def release(self) -> None:
        if self.holding:
            self.holding = False
            await self.conn.execute("ROLLBACK")

    async def held_back(self) -> list[HeldBack]:
        """The backends waiting on the barrier, directly or behind one that is."""
        # Inside a transaction pg_stat_activity is read once and cached: clear it each time.
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await self.conn.fetch(_WAITING)
        waiting = {
            r["pid"]: HeldBack(
                r["pid"],
                tuple(r["blocked_by"]),
                f"{r['wait_event_type']}/{r['wait_event']}",
                r["query"] or "",
            )
            for r in rows
        }
        held: dict[int, HeldBack] = {}
        changed = True
        while changed:
            changed = False
            for pid, row in waiting.items():
                if pid not in held and any(b == self.pid or b in held for b in row.blocked_by):
                    held[pid] = row
                    changed = True
        return list(held.values())


class WaitLog:
    """Lock waits seen while the barrier holds, for the timeline (who blocked whom)."""

    def __init__(self, timeline: Timeline, barrier_pid: int) -> None:
        self.timeline = timeline
        self.barrier_pid = barrier_pid
        self.open: dict[int, LockWait] = {}
        self.seen: set[int] = set()

    def update(self, held: list[HeldBack]) -> None:
        now = round(self.timeline.now_ms(), 3)
        for row in held:
            wait = self.open.get(row.pid)
            if wait is None:
                wait = LockWait(
                    actor=f"pid {row.pid}",
                    start_ms=now,
                    end_ms=now,
                    pid=row.pid,
                    wait_event=row.wait_event,
                    query=row.query,
                    blocked_by=list(row.blocked_by),
                )
                self.open[row.pid] = wait
                self.timeline.lock_waits.append(wait)
                self.seen.add(row.pid)
                who = ", ".join(
                    "the barrier" if b == self.barrier_pid else f"pid {b}" for b in row.blocked_by
                )
                self.timeline.add(
                    f"pid {row.pid}", f"waits ({row.wait_event}) behind {who}", "blocked"
                )
            wait.end_ms = now

    def released(self) -> None:
        now = round(self.timeline.now_ms(), 3)
        for wait in self.open.values():
            wait.end_ms = now


__all__ = ["Barrier", "BarrierError", "DatabaseError", "HeldBack", "WaitLog"]
