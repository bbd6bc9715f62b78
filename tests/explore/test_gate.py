"""The proxy's gate: a statement held before it reaches the server while other connections
run, in order within a pipeline, with its Bind (so a held SELECT sees what committed while it
waited); stop() and a client's disconnect with a statement held or running leave no backend
and no lock behind. Everything is synchronised on events, never on pauses."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from racebench.harness.explore.proxy import Connection, ConnectionClosed, Proxy, Statement
from tests.explore.conftest import Db, Watch, only, soon

HELD = "/* held */"


class Hold:
    """Holds each statement whose SQL carries `marker` until `release` is set."""

    def __init__(self, marker: str = HELD) -> None:
        self.marker = marker
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.held: list[Statement] = []
        self.cancelled = False

    async def before(self, conn: Connection, stmt: Statement) -> None:
        if self.marker not in stmt.sql:
            return
        self.held.append(stmt)
        self.arrived.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def connect(proxy: Proxy, db: Db) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        proxy.url_for(db.url), application_name=db.app, autocommit=True
    )


async def balance(admin: asyncpg.Connection, db: Db, id_: int = 1) -> int:
    value: int = await admin.fetchval(f"SELECT balance FROM {db.table} WHERE id = $1", id_)
    return value


async def backends(admin: asyncpg.Connection, db: Db) -> int:
    count: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", db.app
    )
    return count


async def test_a_held_statement_waits_while_other_connections_run(
    proxy: Proxy, db: Db, admin: asyncpg.Connection
) -> None:
    gate = Hold()
    proxy.gate = gate
    a, b = await connect(proxy, db), await connect(proxy, db)
    try:
        held = asyncio.create_task(
            a.execute(f"UPDATE {db.table} SET balance = balance * 2 WHERE id = 1 {HELD}")
        )
        await soon(gate.arrived.wait())
        stmt = gate.held[0]
        assert stmt.started is None and stmt.ended is None
        # The other connection runs, and the held UPDATE has not reached the server.
        cur = await b.execute(f"UPDATE {db.table} SET balance = balance + 10 WHERE id = 1")
        assert cur.rowcount == 1
        assert await balance(admin, db) == 110
        other = only(proxy, b.info.backend_pid, "balance + 10")
        gate.release.set()
        assert (await soon(held)).rowcount == 1
        assert await balance(admin, db) == 220
        assert (stmt.tag, stmt.rows) == ("UPDATE 1", 1)
        assert stmt.started is not None and other.ended is not None
        assert other.ended <= stmt.started  # it went upstream only once released
    finally:
        await a.close()
        await b.close()


async def test_a_held_select_sees_what_committed_while_it_was_held(
    proxy: Proxy, db: Db, admin: asyncpg.Connection
) -> None:
    """psycopg writes Parse, Bind, Describe, Execute and Sync at once; PostgreSQL takes a
    SELECT's snapshot at Bind, so the proxy holds the Bind with the Execute."""
    gate = Hold()
    proxy.gate = gate
    a = await connect(proxy, db)
    try:
        read = asyncio.create_task(
            a.execute(f"SELECT balance FROM {db.table} WHERE id = %s {HELD}", [1])
        )
        await soon(gate.arrived.wait())
        assert gate.held[0].protocol == "extended"
        await admin.execute(f"UPDATE {db.table} SET balance = 555 WHERE id = 1")  # commits
        gate.release.set()
        assert await (await soon(read)).fetchall() == [(555,)]
    finally:
        await a.close()


async def test_postgres_takes_a_select_snapshot_at_bind(
    proxy: Proxy, db: Db, admin: asyncpg.Connection
) -> None:
    """Why the Bind is held: Bind, then a commit elsewhere, then Execute reads the old row."""
    from racebench.harness.explore import wire
    from tests.explore.conftest import Raw, database_of, kinds

    raw = await Raw.connect(proxy.port, database_of(db), db.app)
    try:
        sql = f"SELECT balance FROM {db.table} WHERE id = 1"
        raw.send(wire.parse(sql), wire.bind(), wire.flush())
        assert [k for k, _ in [await _read(raw), await _read(raw)]] == [ord("1"), ord("2")]
        await admin.execute(f"UPDATE {db.table} SET balance = 555 WHERE id = 1")
        raw.send(wire.execute(), wire.sync())
        answer = await raw.until_ready()
        assert kinds(answer) == "DCZ"
        assert answer[0][1].endswith(b"100")  # the DataRow: the value before the commit
    finally:
        await raw.close()


async def _read(raw: Any) -> tuple[int, bytes]:
    from racebench.harness.explore import wire

    header = await raw.reader.readexactly(5)
    length = wire.UINT32.unpack_from(header, 1)[0]
    return header[0], await raw.reader.readexactly(length - 4)


async def test_a_pipeline_stays_in_order_behind_a_held_statement(
    proxy: Proxy, db: Db, admin: asyncpg.Connection
) -> None:
    gate = Hold()
    proxy.gate = gate
    a = await connect(proxy, db)
    pid = a.info.backend_pid
    update = f"UPDATE {db.table} SET balance = balance + %s WHERE id = 1"

    async def pipeline() -> None:
        async with a.pipeline():
            await a.execute(update + " /* first */", [1])
            await a.execute(update + f" {HELD}", [10])
            await a.execute(f"UPDATE {db.table} SET balance = balance * %s WHERE id = 1", [3])

    try:
        running = asyncio.create_task(pipeline())
        await soon(gate.arrived.wait())
        first, second = only(proxy, pid, "/* first */"), gate.held[0]
        assert first.started is not None and second.started is None
        # The third statement waits behind the held one: the proxy has not looked at it yet.
        assert not [s for s in proxy.statements if "balance * " in s.sql]
        gate.release.set()
        await soon(running)
        third = only(proxy, pid, "balance * ")
        assert [s.tag for s in (first, second, third)] == ["UPDATE 1"] * 3
        assert second.started is not None and third.started is not None
        assert first.started <= second.started <= third.started
        assert await balance(admin, db) == (100 + 1 + 10) * 3  # applied in the client's order
    finally:
        await a.close()


async def test_stop_with_a_held_statement_leaves_no_backend_and_no_lock(
    database_url: str, db: Db, admin: asyncpg.Connection
) -> None:
    from tests.explore.conftest import upstream_of

    proxy = Proxy(*upstream_of(database_url))
    await proxy.start()
    gate = Hold()
    proxy.gate = gate
    a = await connect(proxy, db)
    pid = a.info.backend_pid
    await a.execute("BEGIN")
    await a.execute(f"UPDATE {db.table} SET balance = 0 WHERE id = 1")  # a row lock, held
    assert await admin.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1", pid) > 0
    held = asyncio.create_task(a.execute(f"UPDATE {db.table} SET balance = 1 WHERE id = 2 {HELD}"))
    await soon(gate.arrived.wait())
    waiter = asyncio.create_task(gate.held[0].wait())

    await soon(proxy.stop())

    assert gate.cancelled  # the gate's before() was cancelled
    with pytest.raises(ConnectionClosed):
        await soon(waiter)
    assert gate.held[0].aborted and gate.held[0].started is None
    with pytest.raises(psycopg.OperationalError):
        await soon(held)
    await a.close()
    assert await backends(admin, db) == 0
    assert await admin.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1", pid) == 0
    assert await balance(admin, db) == 100  # the transaction was rolled back
    assert not proxy._tasks and not proxy._live  # nothing of the proxy is left running
    await proxy.stop()  # again: nothing to do


async def test_stop_cancels_a_statement_running_upstream(
    database_url: str, db: Db, admin: asyncpg.Connection
) -> None:
    """A statement waiting on a lock would keep its backend alive past a Terminate: stop()
    cancels it first."""
    from tests.explore.conftest import upstream_of

    proxy = Proxy(*upstream_of(database_url))
    await proxy.start()
    watch = Watch(proxy)
    a = await connect(proxy, db)
    pid = a.info.backend_pid
    lock = admin.transaction()
    await lock.start()
    await admin.execute(f"SELECT 1 FROM {db.table} WHERE id = 1 FOR UPDATE")
    waiting = watch.noticed(pid, "racebench: waiting")
    blocked = asyncio.create_task(
        a.execute(
            "DO $$BEGIN RAISE NOTICE 'racebench: waiting';"
            f" UPDATE {db.table} SET balance = 0 WHERE id = 1; END$$"
        )
    )
    try:
        await soon(waiting.wait())
        await soon(proxy.stop())
    finally:
        await lock.rollback()
    assert await backends(admin, db) == 0
    with pytest.raises(psycopg.OperationalError):
        await soon(blocked)
    await a.close()
    assert await balance(admin, db) == 100


async def test_a_client_gone_while_held_takes_its_backend_with_it(
    proxy: Proxy, db: Db, admin: asyncpg.Connection, watch: Watch
) -> None:
    from racebench.harness.explore import wire
    from tests.explore.conftest import Raw, database_of

    gate = Hold()
    proxy.gate = gate
    raw = await Raw.connect(proxy.port, database_of(db), db.app)
    closed = watch.closed(raw.pid)
    raw.send(wire.query("BEGIN"))
    await raw.until_ready()
    raw.send(wire.query(f"UPDATE {db.table} SET balance = 0 WHERE id = 1"))
    await raw.until_ready()
    raw.send(wire.query(f"SELECT 1 {HELD}"))
    await soon(gate.arrived.wait())
    raw.writer.close()  # the client vanishes, no Terminate
    await soon(closed.wait())  # on_close: the server hung up, so its backend has exited
    assert gate.cancelled and gate.held[0].aborted
    assert await backends(admin, db) == 0
    assert await admin.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1", raw.pid) == 0
    assert await balance(admin, db) == 100


async def test_a_failing_gate_closes_only_its_connection(
    proxy: Proxy, db: Db, admin: asyncpg.Connection, watch: Watch
) -> None:
    class Broken:
        async def before(self, conn: Connection, stmt: Statement) -> None:
            if HELD in stmt.sql:
                raise RuntimeError("a scheduler bug")

    proxy.gate = Broken()
    a, b = await connect(proxy, db), await connect(proxy, db)
    closed = watch.closed(a.info.backend_pid)
    try:
        with pytest.raises(psycopg.OperationalError):
            await a.execute(f"SELECT 1 {HELD}")
        await soon(closed.wait())
        assert (await (await b.execute("SELECT 2")).fetchone()) == (2,)
    finally:
        await a.close()
        await b.close()
