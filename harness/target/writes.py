"""Which tables a request writes, in which transaction, and whether it had read first: the
lock probe.

racebench takes `LOCK TABLE <every table it may lock> IN SHARE MODE` (reads and row locks pass,
every write waits) and sends one request alone. Each time the request's backend waits on a
table, racebench notes the table, the transaction, and whether that transaction had touched a
table before (it holds a lock on one); then a second connection takes every table still held
but that one, the first lets go, and the request goes on to its next write. So the probe sees
every table the request writes, in order, exactly, with two connections: where PostgreSQL's
per-table counters (pg_stat_user_tables) reach the shared view up to ten seconds late, and say
nothing of transactions or order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg

from racebench.harness.database import connect, parse_url

# How long one request may take to answer under the probe (each write waits only for the
# probe's next poll); past it, what was seen is returned as incomplete.
PROBE_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.002
# The probe's LOCK TABLE waits this long for a table someone else is writing.
LOCK_TIMEOUT = "5s"
T = TypeVar("T")

# Every table of the database racebench may lock (SHARE MODE needs UPDATE, DELETE or TRUNCATE).
_TABLES = """
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%'
  AND (has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE')
       OR has_table_privilege(c.oid, 'TRUNCATE'))
ORDER BY 1
"""
# The backends waiting for a table lock that `$1` holds: which table, which transaction, and
# whether that transaction had touched a table before (it keeps a lock on every one it has).
_WAITING = """
SELECT l.pid, format('%I.%I', n.nspname, c.relname) AS name, a.xact_start,
       left(a.query, 200) AS query,
       EXISTS (SELECT 1 FROM pg_locks g JOIN pg_class gc ON gc.oid = g.relation
               WHERE g.pid = l.pid AND g.locktype = 'relation' AND g.granted
                 AND gc.relkind IN ('r', 'p')
                 AND gc.relnamespace NOT IN ('pg_catalog'::regnamespace,
                                             'information_schema'::regnamespace))
           AS after_read
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND NOT l.granted AND $1 = ANY(pg_blocking_pids(l.pid))
"""


@dataclass(frozen=True)
class Write:
    """A request's first write to one table."""

    table: str  # schema.table
    transaction: int  # 1, 2, ...: the request's transactions, in the order they wrote
    after_read: bool  # its transaction had touched a table before this write
    query: str

    @property
    def short(self) -> str:
        """The table without its schema when that is public."""
        schema, _, name = self.table.partition(".")
        return name if schema == "public" else self.table


@dataclass(frozen=True)
class Probe:
    """What one request wrote: its writes in order, and whether the probe saw it through."""

    writes: list[Write]
    complete: bool = True

    def tables(self, *, after_read: bool | None = None) -> list[str]:
        return [w.short for w in self.writes if after_read is None or w.after_read == after_read]

    def describe(self) -> str:
        """`shop_webhook_log (transaction 1, before reading anything); shop_payment, shop_receipt
        (transaction 2, after a read)`."""
        if not self.writes:
            return "nothing"
        parts = []
        groups: dict[tuple[int, bool], list[str]] = {}
        for w in self.writes:
            groups.setdefault((w.transaction, w.after_read), []).append(w.short)
        many = len({w.transaction for w in self.writes}) > 1
        for (transaction, after_read), tables in groups.items():
            where = f"transaction {transaction}, " if many else ""
            read = "after a read" if after_read else "before reading anything"
            parts.append(f"{', '.join(tables)} ({where}{read})")
        text = "; ".join(parts)
        return text if self.complete else f"{text}; (incomplete: the request did not finish)"


async def probe(database_url: str, send: Callable[[], Awaitable[T]]) -> tuple[T, Probe]:
    """Run `send()` (one request, alone) under the lock probe; its result and what it wrote."""
    url = parse_url(database_url)
    first, second = await connect(url), await connect(url)
    try:
        for conn in (first, second):
            await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        tables = [r["name"] for r in await first.fetch(_TABLES)]
        holder, spare = first, second
        await _lock(holder, tables)
        task = asyncio.ensure_future(send())
        writes: list[Write] = []
        transactions: dict[tuple[int, object], int] = {}
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        complete = True
        while not task.done():
            if time.monotonic() >= deadline:
                complete = False
                break
            waiting = await spare.fetch(_WAITING, holder.get_server_pid())
            if not waiting:
                await asyncio.sleep(POLL_INTERVAL_S)  # polling the server's lock state
                continue
            row = waiting[0]
            key = (row["pid"], row["xact_start"])
            number = transactions.setdefault(key, len(transactions) + 1)
            writes.append(Write(row["name"], number, bool(row["after_read"]), row["query"] or ""))
            tables = [t for t in tables if t != row["name"]]
            await _lock(spare, tables)  # SHARE beside SHARE: granted at once
            await holder.execute("ROLLBACK")  # the request's write goes on
            holder, spare = spare, holder
        await holder.execute("ROLLBACK")
        return await task, Probe(writes, complete)
    finally:
        for conn in (first, second):
            conn.terminate()


async def _lock(conn: asyncpg.Connection, tables: list[str]) -> None:
    await conn.execute("BEGIN")
    if tables:
        await conn.execute(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE")
