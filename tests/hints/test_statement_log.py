"""The statement-log reader: transactions read back from a log a real PostgreSQL wrote, and from
literal log text for what a test server does not readily print (%c, durations, FATAL)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from racebench.harness.database import provision, run_sync
from racebench.harness.hints.statement_log import (
    RECOMMENDED_PREFIX,
    LogFormatError,
    LoggedTransaction,
    read_log,
    read_log_file,
)

# The workload's statements, as the client sends them (asyncpg: the extended protocol when a
# statement has arguments, a simple Query when it has none; BEGIN; / COMMIT; / ROLLBACK; its own).
READ_FOR_UPDATE = "SELECT id, status, amount FROM payments WHERE id = $1 FOR UPDATE"
CAPTURE = "UPDATE payments SET status = $2 WHERE id = $1"
PENDING = "SELECT count(*) FROM payments WHERE status = $1"
RECEIPT = "INSERT INTO receipts (payment_id) VALUES ($1)"
FAIL = "UPDATE payments\n   SET status = 'failed'\n WHERE id = $1"  # logged on three lines
DIVIDE = "SELECT 100 / amount FROM payments WHERE id = $1"  # payment 3's amount is 0
MULTI = "BEGIN; UPDATE payments SET amount = amount WHERE id = 2; COMMIT"

SCHEMA = """
CREATE TABLE payments (id int PRIMARY KEY, status text NOT NULL, amount int NOT NULL);
CREATE TABLE receipts (payment_id int NOT NULL);
INSERT INTO payments VALUES (1, 'pending', 500), (2, 'pending', 700), (3, 'pending', 0);
"""


class Rollback(Exception):
    """Leaves an asyncpg transaction block, which then sends ROLLBACK."""


@dataclass(frozen=True)
class Logged:
    capture: int  # the pid of the connection with application_name 'capture'
    other: int  # the pid of the one without
    transactions: list[LoggedTransaction]


@pytest.fixture(scope="module")
def logging_server() -> Iterator[tuple[str, Path]]:
    """A database on an embedded PostgreSQL of its own, logging every statement with
    RECOMMENDED_PREFIX; (its URL, the log file). Stopped when the module is done.

    pgserver starts PostgreSQL with `pg_ctl -l <pgdata>/log` and no logging collector, so every
    backend appends its messages to that file itself, before it answers its client: what a
    statement logged is in the file when the client has its result, with nothing to wait for.
    (With logging_collector on, a separate process writes the file, later.)
    """
    with provision(owned=True) as db:
        server = db.owned_server
        assert server is not None

        async def configure() -> None:
            conn = await asyncpg.connect(db.url)
            try:
                await conn.execute(SCHEMA)
                await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
                await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{RECOMMENDED_PREFIX}'")
                await conn.execute("ALTER SYSTEM SET lc_messages = 'C'")
            finally:
                await conn.close()

        run_sync(configure())
        # A restart, not pg_reload_conf(): a reload reaches the postmaster and each backend
        # asynchronously, so a connection opened right after it may still log the old way.
        server.restart()
        yield db.url, Path(server._server.log)  # pgserver's PostgresServer.log


@pytest.fixture(scope="module")
async def logged(logging_server: tuple[str, Path]) -> AsyncIterator[Logged]:
    """Two connections' transactions, interleaved, and what the log reads back."""
    url, log = logging_server
    a = await asyncpg.connect(url, server_settings={"application_name": "capture"})
    b = await asyncpg.connect(url)
    try:
        async with a.transaction():  # A0
            await a.fetchrow(READ_FOR_UPDATE, 1)
            await b.fetchval(PENDING, "pending")  # B0: autocommit, inside A0
            await a.execute(CAPTURE, 1, "captured")
        await a.execute(RECEIPT, 1)  # A1: autocommit
        with contextlib.suppress(Rollback):
            async with a.transaction():  # A2: rolled back
                await a.execute(FAIL, 2)
                raise Rollback
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with b.transaction():  # B1: an ERROR, then ROLLBACK
                await b.fetchval(DIVIDE, 3)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await b.fetchval(DIVIDE, 3)  # B2: an autocommit statement that fails
        await b.execute("SELECT 1")  # B3
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await b.execute("SELEC 1")  # never logged as a statement: B3 stands
        await b.execute(MULTI)  # B4: one simple Query, a whole transaction
        await b.execute("SELECT 2")  # B5
        yield Logged(a.get_server_pid(), b.get_server_pid(), read_log_file(log, RECOMMENDED_PREFIX))
    finally:
        await a.close()
        await b.close()


def test_a_real_log_reads_back_as_the_transactions_that_ran(logged: Logged) -> None:
    a, b = logged.capture, logged.other
    assert logged.transactions == [
        LoggedTransaction(a, 0, ("BEGIN;", READ_FOR_UPDATE, CAPTURE, "COMMIT;"), "capture", False),
        LoggedTransaction(b, 0, (PENDING,), "[unknown]", False),
        LoggedTransaction(a, 1, (RECEIPT,), "capture", False),
        LoggedTransaction(a, 2, ("BEGIN;", FAIL, "ROLLBACK;"), "capture", True),
        LoggedTransaction(b, 1, ("BEGIN;", DIVIDE, "ROLLBACK;"), "[unknown]", True),
        LoggedTransaction(b, 2, (DIVIDE,), "[unknown]", True),
        LoggedTransaction(b, 3, ("SELECT 1",), "[unknown]", False),
        LoggedTransaction(b, 4, (MULTI,), "[unknown]", False),
        LoggedTransaction(b, 5, ("SELECT 2",), "[unknown]", False),
    ]


def test_transactions_come_in_the_order_of_their_first_line(logged: Logged) -> None:
    lines = [t.line for t in logged.transactions]
    assert lines == sorted(lines)
    assert len(set(lines)) == len(lines)


# From here on, literal log text: lines as PostgreSQL 16 prints them (see the real log above).

TS = "2026-12-07 05:47:05.044 UTC"


def log(*lines: str) -> list[str]:
    """The lines of a log, each with its "\\n", as a file gives them."""
    return [line + "\n" for line in "\n".join(lines).split("\n")]


def stmt(pid: int, message: str, *, severity: str = "LOG") -> str:
    """A line of prefix '%m [%p] ': `message` as is, a plain SQL text as `statement: ...`."""
    if severity == "LOG" and not message.startswith(("execute ", "duration: ")):
        message = f"statement: {message}"
    return f"{TS} [{pid}] {severity}:  {message}"


def shapes(transactions: list[LoggedTransaction]) -> list[tuple[int, int, tuple[str, ...], bool]]:
    return [(t.pid, t.index, t.statements, t.failed) for t in transactions]


def test_continuation_lines_belong_to_the_prefixed_line_above_them() -> None:
    lines = log(
        stmt(10, "SELECT id"),
        "\t  FROM payments",
        "\t",  # an empty line of the statement: PostgreSQL writes its TAB all the same
        "\t WHERE id = 1",
        stmt(20, "execute <unnamed>: UPDATE payments SET note = $1 WHERE id = 2"),
        stmt(20, "parameters: $1 = 'two", severity="DETAIL"),
        "\tlines'",  # a parameter's second line: not a statement's
        stmt(10, "SELECT 'a'"),
    )
    assert shapes(read_log(lines)) == [
        (10, 0, ("SELECT id\n  FROM payments\n\n WHERE id = 1",), False),
        (20, 0, ("UPDATE payments SET note = $1 WHERE id = 2",), False),
        (10, 1, ("SELECT 'a'",), False),
    ]


def test_interleaved_backends_are_grouped_per_pid_in_order() -> None:
    lines = log(
        f"{TS} [1] LOG:  database system is ready to accept connections",
        stmt(10, "BEGIN ISOLATION LEVEL SERIALIZABLE;"),
        stmt(20, "begin"),
        stmt(10, "execute __asyncpg_stmt_1__: SELECT status FROM payments WHERE id = $1"),
        stmt(20, "execute S_1: SELECT status FROM payments WHERE id = $1"),
        stmt(30, "SELECT now()"),  # autocommit, while both are inside a transaction
        stmt(20, "execute S_2/C_3: UPDATE payments SET status = 'captured' WHERE id = $1"),
        stmt(10, "COMMIT;"),
        stmt(20, "execute fetch from S_2/C_3: UPDATE payments SET status = 'x' WHERE id = $1"),
        stmt(30, "SELECT 1"),
        f"{TS} [2] LOG:  checkpoint starting: time",
        stmt(20, "SELECT 2"),  # the log ends inside 20's transaction
    )
    assert shapes(read_log(lines)) == [
        (10, 0, ("BEGIN ISOLATION LEVEL SERIALIZABLE;", "SELECT status FROM payments WHERE id = $1", "COMMIT;"), False),  # noqa: E501
        (20, 0, ("begin", "SELECT status FROM payments WHERE id = $1", "UPDATE payments SET status = 'captured' WHERE id = $1", "SELECT 2"), False),  # noqa: E501
        (30, 0, ("SELECT now()",), False),
        (30, 1, ("SELECT 1",), False),
    ]  # fmt: skip
    assert [t.line for t in read_log(lines)] == [2, 3, 6, 10]


def test_the_session_id_gives_the_pid_and_tells_a_reused_pid_apart() -> None:
    prefix = "%m %c %l "
    first, second = "6790a1b2.1a85", "6790a1f0.1a85"  # two sessions of pid 0x1a85 = 6789
    lines = log(
        f"{TS} {first} 1 LOG:  statement: BEGIN",
        f"{TS} {first} 2 LOG:  statement: UPDATE payments SET status = 'captured'",
        f"{TS} {second} 1 LOG:  statement: SELECT 1",  # the first session died mid-transaction
        f"{TS} {second} 2 LOG:  statement: SELECT 2",
    )
    assert shapes(read_log(lines, prefix)) == [
        (6789, 0, ("BEGIN", "UPDATE payments SET status = 'captured'"), False),
        (6789, 1, ("SELECT 1",), False),
        (6789, 2, ("SELECT 2",), False),
    ]


def test_a_new_connection_on_a_reused_pid_ends_what_the_old_one_left_open() -> None:
    lines = log(
        stmt(10, "BEGIN"),
        stmt(10, "SELECT 1"),
        f"{TS} [10] LOG:  connection received: host=[local]",
        stmt(10, "SELECT 2"),
    )
    assert shapes(read_log(lines)) == [
        (10, 0, ("BEGIN", "SELECT 1"), True),
        (10, 1, ("SELECT 2",), False),
    ]


@pytest.mark.parametrize("prefix", ["%m ", "%m [%u@%d] ", "%m [%%p] ", "%t %a "])
def test_a_prefix_without_pid_or_session_id_is_refused(prefix: str) -> None:
    with pytest.raises(LogFormatError, match=r"neither %p .* nor %c") as error:
        read_log(log(stmt(10, "SELECT 1")), prefix)
    assert error.value.line_number is None


def test_a_log_that_does_not_match_the_prefix_names_the_line() -> None:
    lines = ["\n", *log(f"{TS} [10] postgres@shop LOG:  statement: SELECT 1")]  # Debian's
    with pytest.raises(LogFormatError) as error:
        read_log(lines, "%m [%p] ")
    assert error.value.line_number == 2
    message = str(error.value)
    assert message.startswith("line 2: expected a PostgreSQL log line: log_line_prefix '%m [%p] '")
    assert "it looks like log_line_prefix '%m [%p] %q%u@%d '" in message
    assert read_log(log(f"{TS} [1] LOG:  checkpoint starting: time")) == []  # matched: no error


def test_duration_lines_count_each_statement_once() -> None:
    # log_min_duration_statement = 0 alone: each statement as it ends, parse and bind too.
    durations_only = log(
        stmt(10, "duration: 0.020 ms  statement: BEGIN"),
        stmt(10, "duration: 0.100 ms  parse <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "duration: 0.050 ms  bind <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "parameters: $1 = '1'", severity="DETAIL"),
        stmt(10, "duration: 0.030 ms  execute <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "parameters: $1 = '1'", severity="DETAIL"),
        stmt(10, "duration: 0.300 ms  statement: UPDATE payments"),
        "\t   SET status = 'captured'",
        stmt(10, "duration: 0.200 ms  statement: COMMIT"),
    )
    # And with log_statement = 'all' as well: the text once, the duration without it.
    both = log(
        stmt(10, "BEGIN"),
        stmt(10, "duration: 0.020 ms"),
        stmt(10, "duration: 0.100 ms  parse <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "duration: 0.050 ms  bind <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "execute <unnamed>: SELECT * FROM payments WHERE id = $1"),
        stmt(10, "parameters: $1 = '1'", severity="DETAIL"),
        stmt(10, "duration: 0.030 ms"),
        stmt(10, "UPDATE payments"),
        "\t   SET status = 'captured'",
        stmt(10, "duration: 0.300 ms"),
        stmt(10, "COMMIT"),
        stmt(10, "duration: 0.200 ms"),
    )
    expected = [
        (10, 0, ("BEGIN", "SELECT * FROM payments WHERE id = $1", "UPDATE payments\n   SET status = 'captured'", "COMMIT"), False),  # noqa: E501
    ]  # fmt: skip
    assert shapes(read_log(durations_only)) == expected
    assert shapes(read_log(both)) == expected


def test_transaction_boundaries_by_first_keyword() -> None:
    lines = log(
        stmt(10, "/* checkout */ START TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        stmt(10, "SAVEPOINT a"),
        stmt(10, "ROLLBACK TO SAVEPOINT a"),  # not an end
        stmt(10, "END"),
        stmt(10, "-- a comment\n\tbegin;"),
        stmt(10, "COMMIT AND CHAIN"),  # ends one and begins the next
        stmt(10, "SELECT 1"),
        stmt(10, "abort"),
        stmt(10, "BEGIN"),
        stmt(10, "PREPARE TRANSACTION 't1'"),
        stmt(10, "COMMIT PREPARED 't1'"),
        stmt(10, "PREPARE q AS SELECT 1"),
        stmt(10, "ROLLBACK"),  # no transaction in progress: a (failed) one of its own
        stmt(10, "SELECT 'BEGIN; COMMIT'; BEGIN"),  # one Query, ends inside a transaction
        stmt(10, "SELECT 3"),
        stmt(10, "COMMIT; SELECT 4"),
        stmt(10, "SELECT 5"),
        stmt(10, "BEGIN; SELECT 6; COMMIT; BEGIN"),
        stmt(10, "SELECT 7"),
        stmt(10, "END"),
    )
    assert shapes(read_log(lines)) == [
        (10, 0, ("/* checkout */ START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SAVEPOINT a", "ROLLBACK TO SAVEPOINT a", "END"), False),  # noqa: E501
        (10, 1, ("-- a comment\nbegin;", "COMMIT AND CHAIN"), False),
        (10, 2, ("SELECT 1", "abort"), True),
        (10, 3, ("BEGIN", "PREPARE TRANSACTION 't1'"), False),
        (10, 4, ("COMMIT PREPARED 't1'",), False),
        (10, 5, ("PREPARE q AS SELECT 1",), False),
        (10, 6, ("ROLLBACK",), True),
        (10, 7, ("SELECT 'BEGIN; COMMIT'; BEGIN", "SELECT 3", "COMMIT; SELECT 4"), False),
        (10, 8, ("SELECT 5",), False),
        (10, 9, ("BEGIN; SELECT 6; COMMIT; BEGIN",), False),  # closed, then a new block:
        (10, 10, ("SELECT 7", "END"), False),
    ]  # fmt: skip


def test_errors_fail_the_transaction_they_belong_to() -> None:
    lines = log(
        stmt(10, "BEGIN"),
        stmt(10, "SELECT 1/0"),
        stmt(20, "SELECT 1"),
        stmt(10, "division by zero", severity="ERROR"),
        stmt(10, "SELECT 1/0", severity="STATEMENT"),
        stmt(10, "COMMIT"),  # PostgreSQL rolls it back: the transaction failed
        stmt(10, "BEGIN"),
        stmt(10, "SAVEPOINT s"),
        stmt(10, "INSERT INTO receipts VALUES (1)"),
        stmt(10, 'duplicate key value violates unique constraint "r_pkey"', severity="ERROR"),
        stmt(10, "Key (payment_id)=(1) already exists.", severity="DETAIL"),
        stmt(10, "INSERT INTO receipts VALUES (1)", severity="STATEMENT"),
        stmt(10, "ROLLBACK TO SAVEPOINT s"),  # recovered: it commits
        stmt(10, "COMMIT"),
        stmt(10, "execute <unnamed>: SELECT 100 / amount\n\tFROM payments"),
        stmt(10, "division by zero", severity="ERROR"),
        stmt(10, "SELECT 100 / amount", severity="STATEMENT"),
        "\tFROM payments",
        stmt(10, "SELECT 2"),
        stmt(10, 'syntax error at or near "SELEC"', severity="ERROR"),
        stmt(10, "SELEC 3", severity="STATEMENT"),  # a statement never logged: not SELECT 2's
        stmt(10, "SELECT 4"),
        stmt(10, 'relation "nope" does not exist', severity="ERROR"),  # no STATEMENT lines
        stmt(10, "SELECT 5"),
        stmt(10, "BEGIN"),
        stmt(10, "terminating connection due to administrator command", severity="FATAL"),
        stmt(10, "SELECT 6"),
    )
    assert shapes(read_log(lines)) == [
        (10, 0, ("BEGIN", "SELECT 1/0", "COMMIT"), True),
        (20, 0, ("SELECT 1",), False),
        (10, 1, ("BEGIN", "SAVEPOINT s", "INSERT INTO receipts VALUES (1)", "ROLLBACK TO SAVEPOINT s", "COMMIT"), False),  # noqa: E501
        (10, 2, ("SELECT 100 / amount\nFROM payments",), True),
        (10, 3, ("SELECT 2",), False),
        (10, 4, ("SELECT 4",), True),
        (10, 5, ("SELECT 5",), False),
        (10, 6, ("BEGIN",), True),
        (10, 7, ("SELECT 6",), False),
    ]  # fmt: skip


def test_prefix_escapes_padding_and_processes_outside_sessions() -> None:
    prefix = "%m [%-6p] %q%x %v %e %-10a|%u@%d "
    lines = log(
        f"{TS} [100   ] LOG:  checkpoint starting: time",  # the checkpointer: cut at %q
        f"{TS} [4242  ] 0 3/17 00000 capture   |shop@shop LOG:  statement: BEGIN",
        f"{TS} [4242  ] 0 3/17 00000 capture   |shop@shop LOG:  00000: statement: SELECT 1",
        f"{TS} [4242  ] 731 3/17 00000 capture   |shop@shop LOG:  statement: COMMIT",
        f"{TS} [4243  ] 0 4/2 00000 a long app name|shop@shop LOG:  statement: SELECT 2",
    )
    transactions = read_log(lines, prefix)
    assert shapes(transactions) == [
        (4242, 0, ("BEGIN", "SELECT 1", "COMMIT"), False),
        (4243, 0, ("SELECT 2",), False),
    ]
    assert [t.application for t in transactions] == ["capture", "a long app name"]
    assert read_log(log(stmt(10, "SELECT 1")), "%m [%p] ")[0].application is None


def test_read_log_file_streams_a_file(tmp_path: Path) -> None:
    path = tmp_path / "postgresql.log"
    text = "".join(log(stmt(10, "SELECT 'a\rb'"), stmt(10, "SELECT 'caf\xe9'")))
    latin_1 = f"{TS} [10] LOG:  statement: SELECT '\xff'\n".encode("latin-1")  # not UTF-8
    path.write_bytes(text.encode() + latin_1)
    assert [t.statements for t in read_log_file(path)] == [
        ("SELECT 'a\rb'",), ("SELECT 'café'",), ("SELECT '\ufffd'",),
    ]  # fmt: skip
