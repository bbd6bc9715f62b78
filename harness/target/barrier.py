"""The barrier: force a race in a service whose code we cannot change, with PostgreSQL alone.

The harness opens its own transaction and takes `LOCK TABLE <the capture tables> IN SHARE
MODE`. Plain reads pass it, and so do `SELECT ... FOR UPDATE` row locks (ROW SHARE does not
conflict with SHARE); every INSERT, UPDATE or DELETE on those tables waits. So every actor
reads `pending` and then waits at its first write. Once every actor is held (waiting on the
barrier, directly or behind another backend that is), the harness rolls back and lets them
all go.

A hold proves something only if the actor had read before it was held, or waits behind one that
is (a row lock, an advisory lock, a unique index: whatever guards its read): a backend that
waits at the barrier at its transaction's first table (a log written before the capture
transaction) has decided nothing yet. `HeldBack.after_read` says whether the waiting
transaction already holds a lock on some table, which every read and write takes and keeps
until the transaction ends.

`RowHolder` is the barrier's other tool: racebench's own `SELECT ... FOR UPDATE` on one payment's
row (the target file's `lock_sql`), for the scenarios that need one request to go first and
the faults that outlast the service's own lock timeout.

The barrier and each row holder are one connection: closing it (any exit, Ctrl-C, SIGTERM, a
crash) releases the lock, and `idle_in_transaction_session_timeout` bounds it on the server
side should this process hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import asyncpg

from racebench.harness.database import connect, parse_url
from racebench.harness.timeline import Timeline
from racebench.results import LockWait

# How long the barrier waits for every actor to be held; past it, the barrier lets go and the
# run is an error (an actor stuck elsewhere, e.g. in the service's own pool or an in-process
# lock, was never shown to have read).
HOLD_TIMEOUT_S = 3.0
# A transaction holding the barrier is never idle longer than this (the harness polls every
# few ms): the server ends it if the harness hangs or dies without closing its socket.
SERVER_SIDE_TIMEOUT = "30s"
# How long taking the barrier may wait for the tables (a long transaction of someone else's).
LOCK_TIMEOUT = "5s"
POLL_INTERVAL_S = 0.002

# Backends of this database that wait on a lock, what blocks them, and whether their
# transaction had touched a table before it waited (its relation locks, kept to its end).
_WAITING = """
SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by, a.wait_event_type, a.wait_event,
       left(a.query, 120) AS query,
       EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
               WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted
                 AND c.relkind IN ('r', 'p')
                 AND c.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                            'information_schema'::regnamespace))
           AS after_read
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.wait_event_type = 'Lock'
"""


class BarrierError(RuntimeError):
    """The barrier cannot be taken (a missing table, a user without the privilege)."""


@dataclass(frozen=True)
class HeldBack:
    pid: int
    blocked_by: tuple[int, ...]
    wait_event: str
    query: str
    after_read: bool  # its transaction had touched a table before it waited
    direct: bool = True  # it waits on racebench's own lock, not behind a held backend

    @property
    def proves(self) -> bool:
        """Whether this hold forces the actor into the race: behind a held backend (its lock
        guards what it would read), or at racebench's lock after a read. A backend waiting at
        racebench's lock before reading anything has decided nothing yet."""
        return self.after_read or not self.direct


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


async def _holder_connection(database_url: str) -> asyncpg.Connection:
    conn = await connect(parse_url(database_url))
    await conn.execute(
        f"SET idle_in_transaction_session_timeout = '{SERVER_SIDE_TIMEOUT}'; "
        f"SET lock_timeout = '{LOCK_TIMEOUT}'"
    )
    return conn


async def _close(conn: asyncpg.Connection) -> None:
    """Closing the connection ends its transaction: the lock is gone whatever happened."""
    try:
        await conn.close(timeout=2)
    except BaseException:
        conn.terminate()
        raise


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
        conn = await _holder_connection(database_url)
        try:
            yield cls(conn, tables, parse_url(database_url).username or "")
        finally:
            await _close(conn)

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

    async def held_back(self, holders: Iterable[int] = ()) -> list[HeldBack]:
        """The backends waiting on the barrier or on a row `holders` hold, directly or behind
        one that is."""
        # Inside a transaction pg_stat_activity is read once and cached: clear it each time.
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await self.conn.fetch(_WAITING)
        waiting = {
            r["pid"]: HeldBack(
                r["pid"],
                tuple(r["blocked_by"]),
                f"{r['wait_event_type']}/{r['wait_event']}",
                r["query"] or "",
                bool(r["after_read"]),
            )
            for r in rows
        }
        ours = {self.pid, *holders}
        held: dict[int, HeldBack] = {}
        changed = True
        while changed:
            changed = False
            for pid, row in waiting.items():
                if pid not in held and any(b in ours or b in held for b in row.blocked_by):
                    held[pid] = replace(row, direct=any(b in ours for b in row.blocked_by))
                    changed = True
        return list(held.values())


class RowHolder:
    """racebench's own row lock on one payment ([payment].lock_sql), in a transaction it keeps
    open until `release()`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.pid: int = conn.get_server_pid()

    @classmethod
    @asynccontextmanager
    async def hold(
        cls, database_url: str, lock_sql: str, payment_id: int
    ) -> AsyncIterator[RowHolder]:
        conn = await _holder_connection(database_url)
        try:
            await conn.execute("BEGIN")
            try:
                row = await conn.fetchrow(lock_sql, payment_id)
            except asyncpg.PostgresError as error:
                raise BarrierError(f"[payment].lock_sql failed: {error}") from None
            if row is None:
                raise BarrierError(f"[payment].lock_sql locked no row for payment {payment_id}")
            yield cls(conn)
        finally:
            await _close(conn)

    async def release(self) -> None:
        if self.conn.is_in_transaction():
            await self.conn.execute("ROLLBACK")


class WaitLog:
    """Lock waits seen while the barrier holds, for the timeline (who blocked whom)."""

    def __init__(self, timeline: Timeline, holders: dict[int, str]) -> None:
        self.timeline = timeline
        self.holders = holders  # pid -> how the timeline names it ("the barrier", ...)
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
                who = ", ".join(self.holders.get(b, f"pid {b}") for b in row.blocked_by)
                read = "" if row.proves else " before reading anything"
                self.timeline.add(
                    f"pid {row.pid}", f"waits ({row.wait_event}) behind {who}{read}", "blocked"
                )
            wait.end_ms = now

    def released(self) -> None:
        now = round(self.timeline.now_ms(), 3)
        for wait in self.open.values():
            wait.end_ms = now


__all__ = ["Barrier", "BarrierError", "HeldBack", "RowHolder", "WaitLog"]
