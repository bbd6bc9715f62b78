"""What no driver above sends, by hand (conftest.Raw): SSLRequest and GSSENCRequest refused,
a Query of several statements, an error in a pipeline, a Parse that fails, COPY FROM STDIN with
the extended protocol (a Sync sent during copy-in gets no answer), a portal suspended by its
row limit, an empty query; an unreachable server; url_for; the transcript off; and
`racebench proxy` as a command."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys

import asyncpg
import psycopg
import pytest
from sqlalchemy import make_url

from racebench.harness.explore import wire
from racebench.harness.explore.proxy import Proxy, Statement
from racebench.harness.explore.wire import Frontend
from tests.explore.conftest import Db, Raw, database_of, kinds, only, soon, upstream_of


async def raw_client(proxy: Proxy, db: Db, *, ssl_first: bool = False) -> Raw:
    return await Raw.connect(proxy.port, database_of(db), db.app, ssl_first=ssl_first)


def extended(sql: str, *params: str, max_rows: int = 0) -> bytes:
    return wire.parse(sql) + wire.bind(params) + wire.describe() + wire.execute("", max_rows)


async def test_ssl_and_gssenc_requests_get_n_and_the_startup_goes_through(
    proxy: Proxy, db: Db
) -> None:
    raw = await raw_client(proxy, db, ssl_first=True)
    try:
        conn = proxy.by_pid(raw.pid)
        assert conn is not None and conn.status == "I" and conn.application_name == db.app
        assert conn.parameters["database"] == database_of(db)
    finally:
        await raw.close()


async def test_a_query_of_several_statements_gives_a_record_per_result(
    proxy: Proxy, db: Db
) -> None:
    raw = await raw_client(proxy, db)
    try:
        sql = f"BEGIN; UPDATE {db.table} SET balance = 1; COMMIT; SELECT 1; SELECT 2"
        raw.send(wire.query(sql))
        assert kinds(await raw.until_ready()) == "CCCTDCTDCZ"
        parts = [s for s in proxy.statements if s.sql == sql]
        assert [s.part for s in parts] == [0, 1, 2, 3, 4]
        assert [s.tag for s in parts] == ["BEGIN", "UPDATE 3", "COMMIT", "SELECT 1", "SELECT 1"]
        txn = parts[0].txn
        assert txn is not None
        # COMMIT ends the first transaction; the two SELECTs share the implicit one after it.
        assert [s.txn for s in parts] == [txn, txn, txn, txn + 1, txn + 1]
        for before, after in itertools.pairwise(parts):
            assert after.started == before.ended  # the server runs them in turn
    finally:
        await raw.close()


async def test_an_error_in_a_pipeline_skips_the_rest_until_sync(proxy: Proxy, db: Db) -> None:
    raw = await raw_client(proxy, db)
    try:
        raw.send(
            extended(f"UPDATE {db.table} SET balance = 5 WHERE id = 1"),
            extended("SELECT 1 / 0"),
            extended(f"UPDATE {db.table} SET balance = 6 WHERE id = 2"),
            wire.sync(),
        )
        # 1 / 0 is folded when planned, at Bind: the error follows ParseComplete.
        assert kinds(await raw.until_ready()) == "12nC1EZ"
        first = only(proxy, raw.pid, "balance = 5")
        failed = only(proxy, raw.pid, "1 / 0")
        skipped = only(proxy, raw.pid, "balance = 6")
        assert (first.tag, failed.error, skipped.skipped) == ("UPDATE 1", "22012", True)
        assert skipped.tag is None and skipped.error is None and skipped.txn is None
        assert first.txn == failed.txn  # one implicit transaction, rolled back
        raw.send(extended("SELEC 1"), extended("SELECT 2"), wire.sync())  # a Parse that fails
        assert kinds(await raw.until_ready()) == "EZ"
        bad, after = only(proxy, raw.pid, "SELEC 1"), only(proxy, raw.pid, "SELECT 2")
        assert (bad.error, after.skipped) == ("42601", True)  # syntax_error, at its Parse
    finally:
        await raw.close()


async def test_copy_in_with_the_extended_protocol(
    proxy: Proxy, db: Db, admin: asyncpg.Connection
) -> None:
    """The server ignores a Sync that reaches it in copy-in mode (libpq sends another after
    CopyDone): the proxy must not wait for a ReadyForQuery for it."""
    raw = await raw_client(proxy, db)
    try:
        raw.send(extended(f"COPY {db.table} FROM STDIN (FORMAT csv)"), wire.sync())
        got = ""
        while not got.endswith("G"):  # ParseComplete, BindComplete, NoData, CopyInResponse
            header = await raw.reader.readexactly(5)
            await raw.reader.readexactly(wire.UINT32.unpack_from(header, 1)[0] - 4)
            got += chr(header[0])
        assert got == "12nG"
        raw.send(
            wire.message(Frontend.COPY_DATA, b"20,2000\n21,2100\n"),
            wire.message(Frontend.COPY_DONE),
            wire.sync(),
        )
        assert kinds(await raw.until_ready()) == "CZ"
        copy = only(proxy, raw.pid, "COPY")
        assert (copy.tag, copy.rows, copy.skipped) == ("COPY 2", 2, False)
        # In step afterwards: an error lands on its own statement.
        raw.send(extended("SELECT 1 / 0"), wire.sync())
        assert kinds(await raw.until_ready()) == "1EZ"
        assert only(proxy, raw.pid, "1 / 0").error == "22012"
        assert await admin.fetchval(f"SELECT sum(balance) FROM {db.table}") == 4400
    finally:
        await raw.close()


async def test_a_portal_suspended_by_its_row_limit(proxy: Proxy, db: Db) -> None:
    raw = await raw_client(proxy, db)
    try:
        raw.send(extended("SELECT generate_series(1, 3)", max_rows=2), wire.execute(), wire.sync())
        assert kinds(await raw.until_ready()) == "12TDDsDCZ"
        first, rest = [s for s in proxy.statements if "generate_series" in s.sql]
        assert (first.suspended, first.tag, rest.tag, rest.rows) == (True, None, "SELECT 1", 1)
        assert first.portal == rest.portal == ""
    finally:
        await raw.close()


async def test_an_empty_query(proxy: Proxy, db: Db) -> None:
    raw = await raw_client(proxy, db)
    try:
        raw.send(wire.query(""))
        assert kinds(await raw.until_ready()) == "IZ"
        empty = only(proxy, raw.pid, "")
        assert empty.ended is not None and (empty.tag, empty.error) == (None, None)
    finally:
        await raw.close()


async def test_an_unreachable_server_is_a_fatal_error_for_the_client(db: Db) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()  # nothing listens on `port` now
    async with Proxy("127.0.0.1", port) as proxy:
        with pytest.raises(psycopg.OperationalError, match="racebench proxy: cannot reach"):
            await psycopg.AsyncConnection.connect(proxy.url_for(db.url))
        assert proxy.connection_count == 1 and proxy.statement_count == 0


async def test_url_for() -> None:
    async with Proxy("127.0.0.1", 5432, listen_host="127.0.0.1", listen_port=0) as proxy:
        at = f"127.0.0.1:{proxy.port}"
        assert proxy.url_for("postgresql://u:p%40ss@db.example:5433/shop?sslmode=disable") == (
            f"postgresql://u:p%40ss@{at}/shop?sslmode=disable"
        )
        assert proxy.url_for("postgres://localhost/x") == f"postgres://{at}/x"
        assert (
            proxy.url_for("postgresql:///x?host=/var/run/postgresql&options=-c%20a%3Db")
            == f"postgresql://{at}/x?options=-c%20a%3Db"
        )


async def test_the_transcript_can_be_off(database_url: str, db: Db) -> None:
    async with Proxy(*upstream_of(database_url), keep=False) as proxy:
        conn = await psycopg.AsyncConnection.connect(proxy.url_for(db.url), autocommit=True)
        await conn.execute("SELECT 1")
        await conn.close()
        assert proxy.statements == [] and proxy.statement_count == 1
        assert proxy.connection_count == 1


async def test_the_proxy_command(database_url: str, db: Db, admin: asyncpg.Connection) -> None:
    """`racebench proxy` prints where it listens, relays, and on SIGTERM closes everything
    (the client's backend included) and says how much went through; exit code 0."""
    host, port = upstream_of(database_url)
    command = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "racebench", "proxy", "--listen", "127.0.0.1:0"),
        *("--upstream", f"{host}:{port}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert command.stdout is not None
        line = (await soon(command.stdout.readline())).decode()
        assert line.startswith("racebench proxy: listening on postgresql://127.0.0.1:"), line
        listening = make_url(line.split()[4])
        url = make_url(db.url).set(host=listening.host, port=listening.port, query={})
        url = url.render_as_string(hide_password=False)
        conn = await psycopg.AsyncConnection.connect(url, application_name=db.app, autocommit=True)
        await conn.execute(f"UPDATE {db.table} SET balance = 1 WHERE id = 1")
        assert (
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", db.app
            )
            == 1
        )
        command.send_signal(signal.SIGTERM)
        out, err = await soon(command.communicate())
        assert command.returncode == 0, err.decode()
        assert out.decode().splitlines()[-1] == "racebench proxy: 1 connections, 1 statements"
        assert (
            await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", db.app
            )
            == 0
        )
        await conn.close()
    finally:
        if command.returncode is None:
            command.kill()
            await command.wait()


def test_statement_duration() -> None:
    stmt = Statement(1, 1, None, "SELECT 1", "simple")
    assert stmt.duration is None and not stmt.finished
    stmt.started, stmt.ended = 1.0, 1.5
    assert stmt.duration == 0.5 and stmt.finished
