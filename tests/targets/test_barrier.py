"""The barrier: writes wait, reads pass, and no lock outlives the harness (cancel, SIGTERM,
SIGKILL), checked from another connection in pg_locks."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator

import asyncpg
import pytest

from racebench.harness.database import connect, parse_url
from racebench.harness.target.barrier import Barrier, BarrierError

TABLE = "barrier_probe"


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(parse_url(database_url))
    await c.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, status text)")
    await c.execute(f"INSERT INTO {TABLE} VALUES (1, 'pending') ON CONFLICT DO NOTHING")
    yield c
    await c.close()


async def share_locks(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_locks WHERE relation = $1::regclass AND mode = 'ShareLock' AND granted",
        TABLE,
    )
    return [r["pid"] for r in rows]


async def wait_until_free(conn: asyncpg.Connection) -> None:
    """Take the strongest lock (waiting up to 10 s): it is granted once the barrier is gone."""
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")


async def test_writes_wait_and_reads_pass(database_url: str, conn: asyncpg.Connection) -> None:
    async with Barrier.open(database_url, (TABLE,)) as barrier:
        await barrier.hold()
        assert await share_locks(conn) == [barrier.pid]
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '200ms'")
            assert await conn.fetchval(f"SELECT status FROM {TABLE} WHERE id = 1") == "pending"
            await conn.fetchval(f"SELECT status FROM {TABLE} WHERE id = 1 FOR UPDATE")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await conn.execute(f"UPDATE {TABLE} SET status = 'captured' WHERE id = 1")
        await barrier.release()
        assert await share_locks(conn) == []


async def test_a_wait_that_begins_after_the_first_look_is_seen(
    database_url: str, conn: asyncpg.Connection
) -> None:
    """pg_stat_activity is cached for a transaction: the barrier must look afresh each time."""
    async with Barrier.open(database_url, (TABLE,)) as barrier:
        await barrier.hold()
        assert await barrier.held_back() == []
        update = asyncio.create_task(conn.execute(f"UPDATE {TABLE} SET status = 'x'"))
        async with asyncio.timeout(10):
            while not await barrier.held_back():  # noqa: ASYNC110 (the server state, no event)
                await asyncio.sleep(0.01)  # polling the server's state, not a timed wait
        [held] = await barrier.held_back()
        assert held.blocked_by == (barrier.pid,)
        await barrier.release()
        await update


async def test_a_cancelled_run_leaves_no_lock(database_url: str, conn: asyncpg.Connection) -> None:
    held = asyncio.Event()

    async def hold_forever() -> None:
        async with Barrier.open(database_url, (TABLE,)) as barrier:
            await barrier.hold()
            held.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await held.wait()
    assert len(await share_locks(conn)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_free(conn)
    assert await share_locks(conn) == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from racebench.cli import _stop_on_sigterm
    from racebench.harness.target.barrier import Barrier

    async def main() -> None:
        async with Barrier.open(sys.argv[1], (sys.argv[2],)) as barrier:
            await barrier.hold()
            print("held", flush=True)
            await asyncio.Event().wait()

    _stop_on_sigterm()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
async def test_a_signal_leaves_no_lock(
    database_url: str, conn: asyncpg.Connection, sig: signal.Signals
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, database_url, TABLE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await child.stdout.readline()
        assert line.strip() == b"held"
        assert len(await share_locks(conn)) == 1
        os.kill(child.pid, sig)
        code = await asyncio.wait_for(child.wait(), 30)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
        await wait_until_free(conn)
        assert await share_locks(conn) == []
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_user_who_cannot_lock_is_told(database_url: str, conn: asyncpg.Connection) -> None:
    await conn.execute("DROP ROLE IF EXISTS barrier_reader")
    await conn.execute("CREATE ROLE barrier_reader LOGIN")
    await conn.execute(f"GRANT SELECT ON {TABLE} TO barrier_reader")
    url = parse_url(database_url).set(username="barrier_reader", password=None)
    async with Barrier.open(url.render_as_string(hide_password=False), (TABLE,)) as barrier:
        with pytest.raises(BarrierError, match="cannot take the barrier lock"):
            await barrier.hold()


async def test_a_missing_table_is_named(database_url: str) -> None:
    async with Barrier.open(database_url, ("no_such_table",)) as barrier:
        with pytest.raises(BarrierError, match="barrier table is missing"):
            await barrier.hold()
