"""Five PostgreSQL drivers behind one small interface, so that every conformance test runs
each of them through the proxy: psycopg 3 and asyncpg in this process; psycopg2
(psycopg2_agent.py), node-postgres (node/agent.js) and PgJDBC (java/DriverAgent.java) as child
processes that take one command a line (`Agent`).

SQL is written with $1, $2... placeholders, each used once and in order (psycopg's drivers get
%s, JDBC ?); parameters are ints. Every call that the server refuses raises `DriverError`
with the SQLSTATE the driver reported (None when it reports none, e.g. a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

import asyncpg
import psycopg
import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
JAVA_SOURCE = HERE / "java" / "DriverAgent.java"
JDBC_JAR = Path("/usr/share/java/postgresql.jar")  # Debian's libpostgresql-jdbc-java

DRIVERS = ("psycopg2", "psycopg", "asyncpg", "node", "jdbc")
CALL_TIMEOUT_S = 60.0  # a hung agent fails the test instead of waiting out pytest's timeout


class DriverError(Exception):
    def __init__(self, sqlstate: str | None, message: str) -> None:
        super().__init__(f"{sqlstate or 'no SQLSTATE'}: {message}")
        self.sqlstate = sqlstate or None


@dataclass
class Result:
    rowcount: int
    rows: list[list[str]] = field(default_factory=list)


def percent_s(sql: str) -> str:
    return re.sub(r"\$\d+", "%s", sql)


def missing_tool(reason: str) -> None:
    """Skip, or fail in CI (`CI` set, as .ci/run does, which installs the tool)."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}, and CI must run this test (.ci/run installs it)")
    pytest.skip(f"{reason}; CI installs it and runs this test")


class Driver:
    """One connection of one driver. `extended`: query() and prepared() use the extended
    protocol (psycopg2 has none: it binds on the client and sends a simple Query).
    `pipelines`: batch() writes all its statements before reading any answer."""

    name = ""
    extended = True
    pipelines = True

    async def connect(self, url: str, app: str, mode: str = "") -> int:
        """Connect and return the backend pid the driver sees (pg_backend_pid()). `mode`:
        "simple" (PgJDBC's preferQueryMode=simple), "pipeline" (node-postgres' pipeline)."""
        raise NotImplementedError

    async def simple(self, sql: str) -> int:
        """`sql` with no parameters, as the driver sends such SQL; the row count."""
        raise NotImplementedError

    async def query(self, sql: str, params: Sequence[int]) -> Result:
        raise NotImplementedError

    async def prepared(self, sql: str, runs: Sequence[Sequence[int]]) -> list[int]:
        """One prepared statement, executed once per run; the row counts."""
        raise NotImplementedError

    async def batch(self, sql: str, runs: Sequence[Sequence[int]]) -> None:
        raise NotImplementedError

    async def begin(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError

    async def copy_in(self, schema: str, table: str, csv: str) -> int:
        raise NotImplementedError

    async def copy_out(self, select: str) -> str:
        """COPY (select) TO STDOUT as CSV."""
        raise NotImplementedError

    def start(self, sql: str) -> asyncio.Task[int]:
        """simple(sql), running while the test goes on (for cancel())."""
        return asyncio.get_running_loop().create_task(self.simple(sql))

    async def cancel(self) -> None:
        """Cancel the running statement with the driver's own cancel API."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Psycopg(Driver):
    """psycopg 3's AsyncConnection, in autocommit; no parameters: a simple Query."""

    name = "psycopg"

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def c(self) -> psycopg.AsyncConnection[Any]:
        assert self.conn is not None
        return self.conn

    async def connect(self, url: str, app: str, mode: str = "") -> int:
        try:
            self.conn = await psycopg.AsyncConnection.connect(
                url, application_name=app, autocommit=True
            )
        except psycopg.Error as error:
            raise DriverError(error.sqlstate, str(error)) from error
        return int((await self.query("SELECT pg_backend_pid()", [])).rows[0][0])

    async def _execute(
        self, sql: str, params: Sequence[int] | None, prepare: bool = False
    ) -> Result:
        try:
            cur = await self.c.execute(sql, params, prepare=prepare or None)
            rows = await cur.fetchall() if cur.description else []
        except psycopg.Error as error:
            raise DriverError(error.sqlstate, str(error)) from error
        return Result(cur.rowcount, [[str(v) for v in row] for row in rows])

    async def simple(self, sql: str) -> int:
        return (await self._execute(sql, None)).rowcount

    async def query(self, sql: str, params: Sequence[int]) -> Result:
        return await self._execute(percent_s(sql), list(params) if params else None)

    async def prepared(self, sql: str, runs: Sequence[Sequence[int]]) -> list[int]:
        return [(await self._execute(percent_s(sql), run, prepare=True)).rowcount for run in runs]

    async def batch(self, sql: str, runs: Sequence[Sequence[int]]) -> None:
        try:
            async with self.c.pipeline():
                for run in runs:
                    await self.c.execute(percent_s(sql), run)
        except psycopg.Error as error:
            raise DriverError(error.sqlstate, str(error)) from error

    async def begin(self) -> None:
        await self.c.set_autocommit(False)  # psycopg sends BEGIN before the next statement

    async def rollback(self) -> None:
        await self.c.rollback()
        await self.c.set_autocommit(True)

    async def copy_in(self, schema: str, table: str, csv: str) -> int:
        async with self.c.cursor() as cur:
            async with cur.copy(f"COPY {schema}.{table} FROM STDIN (FORMAT csv)") as copy:
                await copy.write(csv)
            return cur.rowcount

    async def copy_out(self, select: str) -> str:
        chunks = []
        async with self.c.cursor() as cur:
            async with cur.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
                async for chunk in copy:
                    chunks.append(bytes(chunk))
        return b"".join(chunks).decode()

    async def cancel(self) -> None:
        await self.c.cancel_safe()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


# Right after a server's FATAL (pg_terminate_backend), asyncpg's next call raises
# InternalClientError ("cannot switch to state"), with or without the proxy; later ones
# InterfaceError.
ASYNCPG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class Asyncpg(Driver):
    """asyncpg: no arguments, a simple Query (execute); with them, named prepared statements.
    Its cancel API is cancelling the task: it sends a CancelRequest, and the task raises
    CancelledError rather than an error with the SQLSTATE (the proxy still sees 57014)."""

    name = "asyncpg"

    def __init__(self) -> None:
        self.conn: asyncpg.Connection | None = None
        self.running: asyncio.Task[int] | None = None
        self.transaction: Any = None

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn

    @staticmethod
    def _rows(status: str) -> int:
        last = status.split()[-1] if status else ""
        return int(last) if last.isdigit() else -1

    async def connect(self, url: str, app: str, mode: str = "") -> int:
        self.conn = await asyncpg.connect(url, server_settings={"application_name": app})
        return int(await self.c.fetchval("SELECT pg_backend_pid()"))

    async def simple(self, sql: str) -> int:
        try:
            return self._rows(await self.c.execute(sql))
        except ASYNCPG_ERRORS as error:
            raise DriverError(getattr(error, "sqlstate", None), str(error)) from error

    async def query(self, sql: str, params: Sequence[int]) -> Result:
        try:
            stmt = await self.c.prepare(sql)
            rows = await stmt.fetch(*params)
        except ASYNCPG_ERRORS as error:
            raise DriverError(getattr(error, "sqlstate", None), str(error)) from error
        return Result(self._rows(stmt.get_statusmsg()), [[str(v) for v in r] for r in rows])

    async def prepared(self, sql: str, runs: Sequence[Sequence[int]]) -> list[int]:
        stmt = await self.c.prepare(sql)
        counts = []
        for run in runs:
            await stmt.fetch(*run)
            counts.append(self._rows(stmt.get_statusmsg()))
        return counts

    async def batch(self, sql: str, runs: Sequence[Sequence[int]]) -> None:
        await self.c.executemany(sql, runs)

    async def begin(self) -> None:
        self.transaction = self.c.transaction()
        await self.transaction.start()

    async def rollback(self) -> None:
        await self.transaction.rollback()

    async def copy_in(self, schema: str, table: str, csv: str) -> int:
        status = await self.c.copy_to_table(
            table, schema_name=schema, source=io.BytesIO(csv.encode()), format="csv"
        )
        return self._rows(status)

    async def copy_out(self, select: str) -> str:
        out = io.BytesIO()
        await self.c.copy_from_query(select, output=out, format="csv")
        return out.getvalue().decode()

    def start(self, sql: str) -> asyncio.Task[int]:
        self.running = super().start(sql)
        return self.running

    async def cancel(self) -> None:
        assert self.running is not None
        self.running.cancel()

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class Agent(Driver):
    """A driver in a child process (node/agent.js, java/DriverAgent.java): one command a line
    on its stdin, tab-separated and percent-encoded, answered by id on its stdout."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.ids = itertools.count(1)
        self.waiting: dict[str, asyncio.Future[list[str]]] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.stderr = bytearray()

    async def open(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        loop = asyncio.get_running_loop()
        self.readers = [loop.create_task(self._answers()), loop.create_task(self._stderr())]

    async def _stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    async def _answers(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            id_, *fields = line.decode().rstrip("\n").split("\t")
            future = self.waiting.pop(id_, None)
            if future is not None and not future.done():
                future.set_result([unquote_plus(f) for f in fields])
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(RuntimeError(f"{self.name} agent exited: {self.stderr!r}"))

    def _send(self, op: str, *args: object) -> asyncio.Future[list[str]]:
        assert self.proc is not None and self.proc.stdin is not None
        id_ = str(next(self.ids))
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self.waiting[id_] = future
        fields = [quote(str(f), safe="") for f in (op, *args)]
        self.proc.stdin.write(("\t".join([id_, *fields]) + "\n").encode())
        return future

    async def call(self, op: str, *args: object) -> list[str]:
        answer = await asyncio.wait_for(self._send(op, *args), CALL_TIMEOUT_S)
        if answer[0] == "err":
            raise DriverError(answer[1], answer[2])
        return answer[1:]

    async def connect(self, url: str, app: str, mode: str = "") -> int:
        return int((await self.call("connect", self.url(url, app, mode), app, mode))[0])

    def url(self, url: str, app: str, mode: str) -> str:
        return url

    async def simple(self, sql: str) -> int:
        return int((await self.call("simple", sql))[0])

    async def query(self, sql: str, params: Sequence[int]) -> Result:
        count, *rows = await self.call("query", sql, *params)
        return Result(int(count), [row.split(",") for row in rows])

    async def prepared(self, sql: str, runs: Sequence[Sequence[int]]) -> list[int]:
        counts = await self.call("prepared", sql, *(",".join(map(str, r)) for r in runs))
        return [int(c) for c in counts]

    async def batch(self, sql: str, runs: Sequence[Sequence[int]]) -> None:
        await self.call("batch", sql, *(",".join(map(str, r)) for r in runs))

    async def begin(self) -> None:
        await self.call("begin")

    async def rollback(self) -> None:
        await self.call("rollback")

    async def copy_in(self, schema: str, table: str, csv: str) -> int:
        sql = f"COPY {schema}.{table} FROM STDIN (FORMAT csv)"
        return int((await self.call("copy_in", sql, csv))[0])

    async def copy_out(self, select: str) -> str:
        return (await self.call("copy_out", f"COPY ({select}) TO STDOUT (FORMAT csv)"))[0]

    async def cancel(self) -> None:
        await self.call("cancel")

    async def close(self) -> None:
        await self.call("close")

    async def stop(self) -> None:
        """Close the connection if it is open, and end the child process."""
        if self.proc is None:
            return
        with contextlib.suppress(DriverError, RuntimeError, TimeoutError):
            await self.call("close")
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), CALL_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self.readers, return_exceptions=True)


class Psycopg2(Agent):
    """In a child process (psycopg2_agent.py): psycopg2's cancel() holds the GIL while it
    waits for the server's answer, which would freeze a proxy in this process."""

    name = "psycopg2"
    extended = False  # it binds on the client and sends a simple Query

    def __init__(self) -> None:
        super().__init__([sys.executable, "psycopg2_agent.py"], HERE)


class Node(Agent):
    name = "node"

    def __init__(self) -> None:
        super().__init__(["node", "agent.js"], NODE_DIR)


class Jdbc(Agent):
    name = "jdbc"

    def __init__(self, classes: Path) -> None:
        super().__init__(
            ["java", "-cp", f"{classes}{os.pathsep}{JDBC_JAR}", "DriverAgent"], classes
        )

    def url(self, url: str, app: str, mode: str) -> str:
        parts = urlsplit(url)
        options = {"user": parts.username or "", "ApplicationName": app}
        if parts.password:
            options["password"] = parts.password
        if mode == "simple":
            options["preferQueryMode"] = "simple"
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())
        return f"jdbc:postgresql://{parts.hostname}:{parts.port}{parts.path}?{query}"


def node_ready() -> None:
    if shutil.which("node") is None:
        missing_tool("node is not installed")
    if not (NODE_DIR / "node_modules" / "pg").is_dir():
        missing_tool("tests/explore/node has no node_modules (npm ci --prefix tests/explore/node)")


def compile_jdbc_agent(into: Path) -> Path:
    """javac DriverAgent.java into `into`; skip (fail in CI) without java, javac or the jar."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not installed")
    if not JDBC_JAR.is_file():
        missing_tool(f"{JDBC_JAR} is missing (Debian's libpostgresql-jdbc-java)")
    done = subprocess.run(
        ["javac", "-cp", str(JDBC_JAR), "-d", str(into), str(JAVA_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return into
