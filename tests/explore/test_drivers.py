"""Five real drivers through the proxy against the real PostgreSQL: psycopg2, psycopg 3,
asyncpg, node-postgres and PgJDBC (tests/explore/drivers.py). Each test runs once per driver
and checks both what the driver got and what the proxy's transcript says about it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from racebench.harness.explore.proxy import Connection, Proxy, Statement
from tests.explore.conftest import Db, Watch, only, soon, statements
from tests.explore.drivers import Driver, DriverError

SLEEP = "DO $$BEGIN RAISE NOTICE 'racebench: sleeping'; PERFORM pg_sleep(10); END$$"


async def balances(admin: asyncpg.Connection, db: Db) -> list[int]:
    return [r["balance"] for r in await admin.fetch(f"SELECT balance FROM {db.table} ORDER BY id")]


def connection(proxy: Proxy, pid: int) -> Connection:
    conn = proxy.by_pid(pid)
    assert conn is not None, f"no open proxied connection has backend {pid}"
    return conn


async def test_simple_and_extended_protocol(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection
) -> None:
    url = proxy.url_for(db.url)
    # PgJDBC sends everything extended unless told preferQueryMode=simple; the others send a
    # statement without parameters as a simple Query.
    pid = await driver.connect(url, db.app, mode="simple")
    assert await driver.simple(f"UPDATE {db.table} SET balance = balance + 1 WHERE id <= 2") == 2
    update = only(proxy, pid, "SET balance = balance + 1")
    assert (update.protocol, update.tag, update.rows, update.params) == (
        "simple",
        "UPDATE 2",
        2,
        None,
    )
    assert update.backend_pid == pid and update.error is None and update.started is not None
    assert update.ended is not None and update.ended >= update.started
    if driver.name == "jdbc":
        await driver.close()
        pid = await driver.connect(url, db.app)

    result = await driver.query(f"SELECT balance FROM {db.table} WHERE id = $1", [1])
    assert result.rows == [["101"]]
    changed = await driver.query(
        f"UPDATE {db.table} SET balance = balance - $1 WHERE id = $2", [5, 3]
    )
    assert changed.rowcount == 1
    select = only(proxy, pid, "SELECT balance FROM")
    minus = only(proxy, pid, "SET balance = balance -")
    assert (select.tag, select.rows, minus.tag, minus.rows) == ("SELECT 1", 1, "UPDATE 1", 1)
    protocol = "extended" if driver.extended else "simple"
    assert select.protocol == minus.protocol == protocol
    if driver.extended:
        assert select.params == 1 and minus.params == 2
    conn = connection(proxy, pid)
    assert conn.status == "I" and conn.application_name == db.app
    assert update.backend_pid != pid or conn.statements[0].backend_pid == pid
    assert await balances(admin, db) == [101, 101, 95]


async def test_prepared_statement_reused(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection
) -> None:
    pid = await driver.connect(proxy.url_for(db.url), db.app)
    sql = f"UPDATE {db.table} SET balance = balance + $1 WHERE id = $2"
    assert await driver.prepared(sql, [[10, 1], [20, 2]]) == [1, 1]
    assert await balances(admin, db) == [110, 120, 100]
    if driver.extended:
        # Two Executes of one named statement: the second Bind reused the first Parse.
        runs = statements(proxy, pid, "SET balance = balance + $1")
        assert [(s.tag, s.params) for s in runs] == [("UPDATE 1", 2), ("UPDATE 1", 2)]
        assert runs[0].name == runs[1].name and runs[0].name, runs[0]
        assert runs[0].sql == runs[1].sql
    else:
        # psycopg2 has no protocol-level prepared statements: SQL's PREPARE and EXECUTE.
        runs = statements(proxy, pid, "EXECUTE racebench_prepared")
        assert [s.tag for s in runs] == ["UPDATE 1", "UPDATE 1"]
        assert only(proxy, pid, "PREPARE racebench_prepared").tag == "PREPARE"


class Arrivals:
    """A gate that holds nothing: it counts the statements carrying `needle` as they reach the
    proxy, and sets `all_in` once `expected` have."""

    def __init__(self, needle: str, expected: int) -> None:
        self.needle = needle
        self.expected = expected
        self.seen = 0
        self.all_in = asyncio.Event()

    async def before(self, conn: Connection, stmt: Statement) -> None:
        self.seen += stmt.sql.count(self.needle)
        if self.seen >= self.expected:
            self.all_in.set()


async def test_pipelined_batch(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection
) -> None:
    """The batch's first UPDATE waits on a row lock held around the proxy; every statement of
    the batch still reaches the proxy: the driver sent them all without waiting for answers."""
    pid = await driver.connect(proxy.url_for(db.url), db.app, mode="pipeline")
    needle = "SET balance = balance + "
    arrivals = Arrivals(needle, 3)
    proxy.gate = arrivals
    lock = admin.transaction()
    await lock.start()
    await admin.execute(f"SELECT 1 FROM {db.table} WHERE id = 1 FOR UPDATE")
    batch = asyncio.create_task(
        driver.batch(
            f"UPDATE {db.table} SET balance = balance + $1 WHERE id = $2", [[1, 1], [2, 2], [3, 3]]
        )
    )
    try:
        await soon(arrivals.all_in.wait())
    finally:
        await lock.rollback()
    await soon(batch)
    assert await balances(admin, db) == [101, 102, 103]
    updates = statements(proxy, pid, needle)
    assert [s.tag for s in updates] == ["UPDATE 1"] * 3
    if driver.name == "psycopg2":
        assert [s.part for s in updates] == [0, 1, 2]  # execute_batch: one Query, three results
    else:
        assert {s.protocol for s in updates} == {"extended"}
    first = updates[0]
    assert first.ended is not None
    assert all(s.started is not None and s.started <= first.ended for s in updates[1:]) or (
        driver.name == "psycopg2"  # a Query's later parts start when the previous one ends
    )


async def test_failed_transaction_rolls_back(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection, watch: Watch
) -> None:
    pid = await driver.connect(proxy.url_for(db.url), db.app)
    await driver.begin()
    added = await driver.query(
        f"UPDATE {db.table} SET balance = balance + $1 WHERE id = $2", [50, 1]
    )
    assert added.rowcount == 1
    with pytest.raises(DriverError) as failed:
        await driver.query(f"UPDATE {db.table} SET balance = balance / $1 WHERE id = $2", [0, 1])
    assert failed.value.sqlstate == "22012"  # division_by_zero
    await driver.rollback()
    assert await balances(admin, db) == [100, 100, 100]

    update = only(proxy, pid, "balance + $1" if driver.extended else "balance + 50")
    division = only(proxy, pid, "balance / ")
    assert (update.tag, update.rows) == ("UPDATE 1", 1)
    assert (division.error, division.tag) == ("22012", None)
    assert division.message is not None and "division by zero" in division.message
    assert update.txn is not None and division.txn == update.txn
    transaction = connection(proxy, pid).transactions[update.txn]
    outcomes = [s.tag or s.error for s in transaction]
    assert outcomes[0] == "BEGIN" and outcomes[-3:] == ["UPDATE 1", "22012", "ROLLBACK"], outcomes
    statuses = "".join(watch.statuses[pid])  # every ReadyForQuery's status, in order
    assert statuses.endswith("I") and "E" in statuses
    assert "T" in statuses[: statuses.index("E")]  # in a transaction, then failed, then idle
    assert connection(proxy, pid).status == "I"


async def test_copy_in_and_out(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection
) -> None:
    pid = await driver.connect(proxy.url_for(db.url), db.app)
    assert await driver.copy_in(db.schema, "accounts", "10,1000\n11,1100\n") == 2
    out = await driver.copy_out(f"SELECT id, balance FROM {db.table} WHERE id >= 10 ORDER BY id")
    assert out == "10,1000\n11,1100\n"
    assert await balances(admin, db) == [100, 100, 100, 1000, 1100]
    copies = [s for s in proxy.statements if s.backend_pid == pid and "COPY" in s.sql.upper()]
    assert [(s.tag, s.rows) for s in copies] == [("COPY 2", 2), ("COPY 2", 2)]
    # The connection is in step after COPY: nothing skipped or aborted, and it still works.
    assert not any(s.skipped or s.aborted for s in proxy.statements)
    assert (await driver.query("SELECT $1 + 1 FROM (SELECT 1) AS one", [41])).rows == [["42"]]
    assert connection(proxy, pid).status == "I"


async def test_cancel(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection, watch: Watch
) -> None:
    """pg_sleep(10) cancelled with the driver's cancel API, once the statement is surely
    running (its NOTICE came through the proxy)."""
    pid = await driver.connect(proxy.url_for(db.url), db.app)
    sleeping = watch.noticed(pid, "racebench: sleeping")
    running = driver.start(SLEEP)
    await soon(sleeping.wait())
    idle = watch.next_ready(pid)
    await driver.cancel()
    if driver.name == "asyncpg":
        with pytest.raises(asyncio.CancelledError):  # asyncpg's cancel is the task's
            await soon(running)
    else:
        with pytest.raises(DriverError) as cancelled:
            await soon(running)
        assert cancelled.value.sqlstate == "57014"  # query_canceled
    sleep = only(proxy, pid, "pg_sleep(10)")
    await soon(sleep.wait())
    assert sleep.error == "57014" and sleep.tag is None
    assert proxy.cancel_requests == [pid] and connection(proxy, pid).cancel_requests == 1
    await soon(idle.wait())  # the backend sent ReadyForQuery: its query stopped
    activity = await admin.fetchrow("SELECT state, query FROM pg_stat_activity WHERE pid = $1", pid)
    assert activity is not None and activity["state"] == "idle", activity
    assert (await driver.query("SELECT $1 + 1 FROM (SELECT 1) AS one", [1])).rows == [["2"]]


async def test_server_drops_the_connection(
    proxy: Proxy, driver: Driver, db: Db, admin: asyncpg.Connection, watch: Watch
) -> None:
    url = proxy.url_for(db.url)
    pid = await driver.connect(url, db.app)
    closed = watch.closed(pid)
    conn = connection(proxy, pid)
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    await soon(closed.wait())  # the server hung up; the proxy closed the client's side
    assert conn.closed is not None and proxy.by_pid(pid) is None
    with pytest.raises(DriverError):
        await driver.simple("SELECT 1")
    # The proxy is unharmed: the same driver connects again and works.
    await driver.close()
    again = await driver.connect(url, db.app)
    assert again != pid
    assert await driver.simple(f"UPDATE {db.table} SET balance = 7 WHERE id = 1") == 1
    assert only(proxy, again, "SET balance = 7").tag == "UPDATE 1"
    assert await balances(admin, db) == [7, 100, 100]
