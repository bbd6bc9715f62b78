"""The proxy's tests: a proxy per test in front of the session's database, an admin connection
that goes around it, a schema per test, events from the proxy's hooks, and a raw protocol
client (wire.py's writers) for what no driver sends."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from racebench.harness.explore import wire
from racebench.harness.explore.proxy import Connection, Proxy, Statement, TxnStatus
from tests.explore.drivers import (
    DRIVERS,
    Agent,
    Asyncpg,
    Driver,
    Jdbc,
    Node,
    Psycopg,
    Psycopg2,
    compile_jdbc_agent,
    node_ready,
)

WAIT_S = 30.0  # how long an awaited event may take before the test fails (never a pause)


async def soon(aw: asyncio.Future[object] | asyncio.Task[object] | object) -> object:
    """Await `aw`, failing the test if it takes longer than WAIT_S."""
    return await asyncio.wait_for(aw, WAIT_S)  # type: ignore[arg-type]


def upstream_of(database_url: str) -> tuple[str, int]:
    url = make_url(database_url)
    host = url.host or url.query.get("host") or "127.0.0.1"
    return str(host), url.port or 5432


@dataclass
class Db:
    """The session's database (reached directly), this test's schema in it, its table
    `accounts` (ids 1, 2, 3 at balance 100) and an application_name of its own."""

    url: str
    schema: str
    app: str

    @property
    def table(self) -> str:
        return f"{self.schema}.accounts"


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection that does not go through the proxy."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def db(database_url: str, admin: asyncpg.Connection) -> AsyncIterator[Db]:
    token = secrets.token_hex(4)
    schema = f"explore_{token}"
    await admin.execute(
        f"""
        CREATE SCHEMA {schema};
        CREATE TABLE {schema}.accounts (id int PRIMARY KEY, balance int NOT NULL);
        INSERT INTO {schema}.accounts VALUES (1, 100), (2, 100), (3, 100);
        """
    )
    yield Db(database_url, schema, f"rb-explore-{token}")
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[Proxy]:
    async with Proxy(*upstream_of(database_url)) as running:
        yield running


class Watch:
    """The proxy's hooks as events, by backend pid."""

    def __init__(self, proxy: Proxy) -> None:
        self.statuses: dict[int, list[TxnStatus]] = defaultdict(list)
        self._ready: dict[int, asyncio.Event] = {}
        self._closed: dict[int, asyncio.Event] = {}
        self._notices: dict[tuple[int, str], asyncio.Event] = {}
        proxy.on_ready = self.ready
        proxy.on_close = self.close
        proxy.on_notice = self.notice

    def ready(self, conn: Connection, previous: TxnStatus | None) -> None:
        if conn.backend_pid is None or conn.status is None:
            return
        self.statuses[conn.backend_pid].append(conn.status)
        event = self._ready.pop(conn.backend_pid, None)
        if event is not None:
            event.set()

    def close(self, conn: Connection) -> None:
        if conn.backend_pid is not None:
            self._closed.setdefault(conn.backend_pid, asyncio.Event()).set()

    def notice(self, conn: Connection, fields: dict[str, str]) -> None:
        if conn.backend_pid is not None:
            self._notices.setdefault((conn.backend_pid, fields["M"]), asyncio.Event()).set()

    def next_ready(self, pid: int) -> asyncio.Event:
        """Set at the next ReadyForQuery of backend `pid`."""
        return self._ready.setdefault(pid, asyncio.Event())

    def closed(self, pid: int) -> asyncio.Event:
        return self._closed.setdefault(pid, asyncio.Event())

    def noticed(self, pid: int, text: str) -> asyncio.Event:
        return self._notices.setdefault((pid, text), asyncio.Event())


@pytest.fixture
def watch(proxy: Proxy) -> Watch:
    return Watch(proxy)


def statements(proxy: Proxy, pid: int, needle: str) -> list[Statement]:
    return [s for s in proxy.statements if s.backend_pid == pid and needle in s.sql]


def only(proxy: Proxy, pid: int, needle: str) -> Statement:
    found = statements(proxy, pid, needle)
    assert len(found) == 1, [s.sql for s in found]
    return found[0]


# --- the five drivers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def jdbc_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_jdbc_agent(tmp_path_factory.mktemp("jdbc"))


@pytest.fixture(params=DRIVERS)
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    made: Driver
    if request.param == "psycopg2":
        made = Psycopg2()
    elif request.param == "psycopg":
        made = Psycopg()
    elif request.param == "asyncpg":
        made = Asyncpg()
    elif request.param == "node":
        node_ready()
        made = Node()
    else:
        made = Jdbc(request.getfixturevalue("jdbc_classes"))
    if isinstance(made, Agent):
        await made.open()
    try:
        yield made
    finally:
        if isinstance(made, Agent):
            await made.stop()
        else:
            await made.close()


# --- a raw protocol client -------------------------------------------------------------------


class Raw:
    """A client speaking the protocol by hand (wire.py's writers), for what no driver sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pid = 0

    @classmethod
    async def connect(cls, port: int, database: str, app: str, *, ssl_first: bool = False) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        if ssl_first:
            for request in (wire.gssenc_request(), wire.ssl_request()):
                writer.write(request)
                assert await reader.readexactly(1) == wire.NOT_SUPPORTED
        params = {"user": "postgres", "database": database, "application_name": app}
        writer.write(wire.startup_message(params))
        for kind, body in await raw.until_ready():
            if kind == wire.Backend.BACKEND_KEY_DATA:
                raw.pid = wire.parse_backend_key(body)[0]
            assert kind != wire.Backend.ERROR_RESPONSE, wire.parse_fields(body)
        return raw

    async def until_ready(self) -> list[tuple[int, bytes]]:
        """The server's messages up to and including the next ReadyForQuery."""
        got = []
        while True:
            header = await self.reader.readexactly(5)
            length = wire.UINT32.unpack_from(header, 1)[0]
            got.append((header[0], await self.reader.readexactly(length - 4)))
            if header[0] == wire.Backend.READY_FOR_QUERY:
                return got

    def send(self, *messages: bytes) -> None:
        self.writer.write(b"".join(messages))

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.terminate())
            self.writer.close()
        await self.writer.wait_closed()


def kinds(messages: list[tuple[int, bytes]]) -> str:
    return "".join(chr(kind) for kind, _ in messages)


def database_of(db: Db) -> str:
    return make_url(db.url).database or "postgres"
