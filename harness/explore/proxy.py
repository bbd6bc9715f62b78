"""A PostgreSQL wire-protocol proxy that records every statement a client runs and lets a
scheduler hold any statement before it reaches the server.

    async with Proxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for("postgresql://postgres@127.0.0.1:5432/postgres")
        ...  # any driver, pointed at `url`
        for stmt in proxy.statements:
            print(stmt.backend_pid, stmt.txn, stmt.tag, stmt.sql)

What passes through
    Everything, byte for byte, in both directions: the proxy never rewrites a message. It
    answers SSLRequest and GSSENCRequest with 'N' (so the client talks plainly; the proxy
    speaks plain TCP on both sides), then forwards the StartupMessage and the whole
    authentication exchange (trust, md5, SCRAM work because nothing is terminated here).
    BackendKeyData passes unchanged, so a driver's CancelRequest carries the real backend pid
    and secret: the proxy forwards it to the server on a fresh connection, as a driver would.
    COPY in both directions, notices, notifications and pipelined batches pass as they come.

What it reads
    Only what the transcript needs: from the client, Query, Parse, Bind, Execute and Close
    (to know which SQL each Execute runs: named and unnamed statements and portals are
    tracked); from the server, BackendKeyData (pid, secret), ReadyForQuery (transaction
    status), ParameterStatus (application_name...), CommandComplete, ErrorResponse,
    EmptyQueryResponse, PortalSuspended, NoticeResponse, the Parse/Bind/Close/Describe answers
    and CopyInResponse. DataRow and CopyData are skipped by length, never copied.

The transcript
    `Proxy.connections` (id -> `Connection`: backend pid, the last ReadyForQuery status, its
    statements and `transactions`) and `Proxy.statements`, every `Statement` in the order the
    proxy met them: sql, parameter count, protocol, prepared-statement and portal names,
    backend pid, the connection's transaction index, `started` (written upstream) and `ended`
    (its CommandComplete, ErrorResponse, EmptyQueryResponse or PortalSuspended arrived), both
    `time.perf_counter()`, the command tag and the rows it counts, the SQLSTATE of an error.
    A statement the server skipped (an earlier error in its pipeline) is `skipped`; one whose
    connection closed first is `aborted`. A simple Query holding several statements gives one
    record per result (`part` 0, 1, ...), each with the whole text as `sql`. Transaction
    indexes are counted from the server's answers: a result with no transaction open starts
    one; ReadyForQuery 'I' and the tags COMMIT, ROLLBACK and PREPARE TRANSACTION end it.

The Gate contract (for a scheduler)
    `proxy.gate` is None or an object with `async def before(conn, stmt) -> None`:

    - It is awaited once per statement execution, before anything of it goes upstream: for a
      simple Query, the Query message; for the extended protocol, the Execute together with
      the Parse, Bind, Describe and Close messages the client sent since its last Sync, Flush
      or Execute. Holding the Bind matters: PostgreSQL takes a SELECT's snapshot at Bind, so a
      statement released after another transaction committed sees that commit. (A client
      that sends Flush or Sync between its Bind and its Execute has its Bind forwarded early,
      and so do deferred messages past 256 KiB.)
    - While it is awaited, that connection's later messages wait behind it, in order (a
      pipelined batch stays in order; they are read, so that a client hanging up is seen,
      but not looked at); answers to its earlier statements still reach the client; other
      connections are not affected.
    - `stmt` is the `Statement` record, with `started` None: sql, params, protocol, name,
      portal, connection_id and backend_pid are set. `conn.status` is the status of the
      connection's last ReadyForQuery (in a pipeline, earlier statements may still be running
      upstream).
    - Returning releases it: its messages are written upstream and `stmt.started` is set.
      Raising closes the connection (the exception is logged). At `Proxy.stop()` or when the
      client disconnects, the pending `before()` is cancelled (CancelledError inside it).
    - `before()` runs on the proxy's event loop: it must await, never block.
    - A CancelRequest from the client while its statement is held goes to the server, where
      nothing of that client is running: it does nothing, and the statement stays held
      (`conn.cancel_requests` counts them; psycopg, for one, then waits 5 s and hangs up).
    - To learn that a released statement finished: `await stmt.wait()` (raises
      `ConnectionClosed` if the connection closed first), or the `on_statement_done` hook. A
      statement that is waiting on a lock has not finished: `conn.backend_pid` is the backend
      to look up in `pg_blocking_pids()`.

Hooks (plain callables, called on the event loop; keep them quick, an exception is logged)
    on_open(conn)                 startup done (first ReadyForQuery; backend_pid known)
    on_close(conn)                both sides closed (for each connection on_open was called
                                  for); the server hung up, so its backend has exited
    on_ready(conn, previous)      every ReadyForQuery; `conn.status` is the new status
    on_statement_done(stmt)       a statement ended (result, error, skipped or aborted)
    on_notice(conn, fields)       a NoticeResponse (fields as in `wire.parse_fields`)

Stopping
    `stop()` stops listening, closes every client connection, cancels held statements,
    sends a CancelRequest for every statement running upstream and a Terminate to every
    server connection, and waits (up to STOP_TIMEOUT_S, then aborts) until each server has
    hung up, which PostgreSQL does only once the backend has exited: when it returns, no
    backend it opened is left and their locks are released. No task is left running.

Why hand-framed
    The framing is a type byte and an int32 length (the startup packet: an int32 length and
    an int32 code), and a pass-through proxy must forward what it does not understand as it
    came, so the code reads only a few bodies (wire.py). Maintained libraries considered:
    Go's pgproto3 and Rust's pgwire (not Python); node's pg-protocol (TypeScript, and it parses
    only the server's messages); buenavista, riffq and pg-mimic (they terminate the protocol
    to build a PostgreSQL-compatible server, they do not relay to a real one); asyncpg,
    psycopg and pg8000 (their framing is internal and client-side only, not a public API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Protocol, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from racebench.harness.explore import wire
from racebench.harness.explore.wire import Backend, Frontend

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0  # reaching the upstream server
CANCEL_TIMEOUT_S = 5.0  # a CancelRequest, sent and acknowledged (the server hangs up)
STOP_TIMEOUT_S = 5.0  # stop(): how long a server may take to hang up before it is aborted
# Parse/Bind/Describe/Close wait for their Execute (so that a held statement holds its Bind);
# past this many bytes they go ahead of it.
MAX_DEFERRED_BYTES = 256 * 1024
# While a statement is held the proxy goes on reading its client (so that it sees the client
# hang up) and queues what comes; past this many bytes it stops reading until released.
MAX_BACKLOG_BYTES = 1024 * 1024

# Tags that end the transaction they run in.
TRANSACTION_ENDS = frozenset({"COMMIT", "ROLLBACK", "PREPARE TRANSACTION"})


class TxnStatus(StrEnum):
    """ReadyForQuery's status byte."""

    IDLE = "I"
    IN_TRANSACTION = "T"
    FAILED = "E"  # in a transaction block that an error aborted


class ConnectionClosed(ConnectionError):
    """The connection closed before the statement ended."""


@dataclass(eq=False)
class Statement:
    """One execution of one statement: a Query (or one result of it, see `part`) or an
    Execute. Times are `time.perf_counter()`."""

    id: int  # the proxy's running count, from 1
    connection_id: int
    backend_pid: int | None
    sql: str  # the Query's text, or the prepared statement's ("" if the proxy never saw it)
    protocol: Literal["simple", "extended"]
    params: int | None = None  # parameter values bound (extended); None for a Query
    name: str | None = None  # the prepared statement's name ("" the unnamed); extended only
    portal: str | None = None  # the portal executed ("" the unnamed); extended only
    part: int = 0  # the n-th result of a Query that holds several statements
    started: float | None = None  # written upstream (None while a gate holds it)
    ended: float | None = None  # its result, error, skip or abort arrived
    tag: str | None = None  # CommandComplete's tag: "UPDATE 1", "SELECT 3", "COMMIT"...
    rows: int | None = None  # the rows the tag counts
    error: str | None = None  # the SQLSTATE of its ErrorResponse
    message: str | None = None  # ... and its message
    txn: int | None = None  # the connection's transaction index, from 0
    skipped: bool = False  # the server skipped it (an error earlier in its pipeline)
    suspended: bool = False  # Execute's row limit reached (PortalSuspended); no tag
    aborted: bool = False  # the connection closed before it ended
    _future: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.ended is not None

    @property
    def duration(self) -> float | None:
        """Seconds from written upstream to ended."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    async def wait(self) -> Statement:
        """Until the statement ended; ConnectionClosed if its connection closed first."""
        if self.ended is None:
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._future)
        if self.aborted:
            raise ConnectionClosed(
                f"connection {self.connection_id} closed before statement {self.id} ended"
            )
        return self

    def _end(self, now: float) -> None:
        self.ended = now
        if self._future is not None and not self._future.done():
            self._future.set_result(None)


@dataclass(eq=False)
class Connection:
    """One client connection and the server connection it is relayed to."""

    id: int  # the proxy's running count, from 1
    parameters: dict[str, str]  # the StartupMessage's: user, database, application_name...
    client: tuple[str, int] | None  # the client's address
    opened: float
    backend_pid: int | None = None
    secret_key: bytes | None = None
    status: TxnStatus | None = None  # the last ReadyForQuery's; None before the first
    txn: int = -1  # the index of the connection's latest transaction (-1: none yet)
    closed: float | None = None
    statements: list[Statement] = field(default_factory=list)
    cancel_requests: int = 0  # CancelRequests for this backend that went through the proxy
    settings: dict[str, str] = field(default_factory=dict)  # the server's ParameterStatus

    @property
    def application_name(self) -> str | None:
        """As the server last reported it (a driver may SET it after connecting), else as the
        StartupMessage gave it."""
        return self.settings.get("application_name") or self.parameters.get("application_name")

    @property
    def transactions(self) -> list[list[Statement]]:
        """The statements of each transaction, by index."""
        grouped: list[list[Statement]] = [[] for _ in range(self.txn + 1)]
        for stmt in self.statements:
            if stmt.txn is not None:
                grouped[stmt.txn].append(stmt)
        return grouped


class Gate(Protocol):
    """Decides when each statement may go upstream (see the module's docstring)."""

    async def before(self, conn: Connection, stmt: Statement) -> None: ...


ConnectionHook = Callable[[Connection], None]
ReadyHook = Callable[[Connection, TxnStatus | None], None]
StatementHook = Callable[[Statement], None]
NoticeHook = Callable[[Connection, dict[str, str]], None]


class _Slot:
    """A message written upstream whose answer has not come back yet: `kind` is its type
    byte; `stmt` its record (Execute, Query); `copy_ends` how many CopyDone/CopyFail the
    client had sent before it."""

    __slots__ = ("copy_ends", "kind", "stmt")

    def __init__(self, kind: int, stmt: Statement | None, copy_ends: int) -> None:
        self.kind = kind
        self.stmt = stmt
        self.copy_ends = copy_ends


# The server messages the proxy reads; the others are skipped by length.
_WANTED = frozenset(
    {
        Backend.BACKEND_KEY_DATA,
        Backend.READY_FOR_QUERY,
        Backend.COMMAND_COMPLETE,
        Backend.ERROR_RESPONSE,
        Backend.EMPTY_QUERY_RESPONSE,
        Backend.PORTAL_SUSPENDED,
        Backend.PARSE_COMPLETE,
        Backend.BIND_COMPLETE,
        Backend.CLOSE_COMPLETE,
        Backend.NO_DATA,
        Backend.ROW_DESCRIPTION,
        Backend.COPY_IN_RESPONSE,
        Backend.NOTICE_RESPONSE,
        Backend.PARAMETER_STATUS,
    }
)
# ParseComplete, BindComplete, CloseComplete: the client message each answers.
_ANSWERS: dict[int, int] = {
    Backend.PARSE_COMPLETE: Frontend.PARSE,
    Backend.BIND_COMPLETE: Frontend.BIND,
    Backend.CLOSE_COMPLETE: Frontend.CLOSE,
}
# Client messages whose answer ends a stretch of the pipeline (ReadyForQuery follows them).
_SYNCS = frozenset({Frontend.SYNC, Frontend.QUERY, Frontend.FUNCTION_CALL})
# Client messages that wait for the next Execute, Sync or Flush before they go upstream.
_DEFERRED = frozenset({Frontend.PARSE, Frontend.BIND, Frontend.DESCRIBE, Frontend.CLOSE})


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Upstream(asyncio.Protocol):
    """The server side of one session."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but have its methods)
        self.session.upstream_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self.session.from_server(data)

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.upstream_lost()

    def pause_writing(self) -> None:
        self.session.pause("upstream full")

    def resume_writing(self) -> None:
        self.session.resume("upstream full")


class _Session(asyncio.Protocol):
    """One client connection (this is its protocol) and its server connection."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.startup_packet = b""
        self.startup = wire.StartupReader()
        self.reader: wire.FrontendReader | None = None  # the typed phase, once started
        self.scanner = wire.BackendScanner(_WANTED)
        self.pending: deque[tuple[int, bytes]] = deque()  # framed, not yet handled
        self.pending_bytes = 0
        self.unit: list[bytes] = []  # deferred messages and their slots
        self.unit_slots: list[_Slot] = []
        self.unit_size = 0
        self.out: list[bytes] = []  # ready to write upstream
        self.out_slots: list[_Slot] = []
        self.queue: deque[_Slot] = deque()  # written upstream, answer pending
        self.prepared: dict[str, str] = {}  # statement name -> SQL
        self.portals: dict[str, tuple[str, str, int]] = {}  # portal -> (statement, SQL, params)
        self.copy_ends = 0
        self.txn_open = False
        self.hold: asyncio.Task[None] | None = None
        self.paused: set[str] = set()
        self.closing = False
        self.upstream_closed = False
        self.opened_hook_called = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- the client side (asyncio.Protocol) ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = cast(asyncio.Transport, transport)
        _nodelay(transport)
        self.proxy._live.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            if self.reader is not None:
                framed = self.reader.feed(data)
                self.pending.extend(framed)
                self.pending_bytes += sum(len(raw) for _, raw in framed)
                self.pump()
                if self.pending_bytes > MAX_BACKLOG_BYTES:
                    self.pause("backlog")
            else:
                self.from_client_startup(data)
        except Exception:
            log.exception("proxy: closing a connection on bad client data")
            self.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()

    def pause(self, reason: str) -> None:
        if not self.paused and self.client is not None:
            self.client.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and self.client is not None and not self.closing:
            self.client.resume_reading()

    # --- startup ----------------------------------------------------------------------------

    def from_client_startup(self, data: bytes) -> None:
        assert self.client is not None
        for packet in self.startup.feed(data):
            if packet.code in (wire.SSL_REQUEST_CODE, wire.GSSENC_REQUEST_CODE):
                self.client.write(wire.NOT_SUPPORTED)
            elif packet.code == wire.CANCEL_REQUEST_CODE:
                self.pause("cancel")
                self.proxy._spawn(self.forward_cancel(packet))
                return
            elif packet.is_startup:
                self.begin(packet)
                return
            else:
                self.client.write(
                    wire.error_response(
                        "FATAL", "08P01", f"racebench proxy: unsupported protocol {packet.code}"
                    )
                )
                self.close()
                return

    def begin(self, packet: wire.StartupPacket) -> None:
        assert self.client is not None
        proxy = self.proxy
        proxy._connection_ids += 1
        peer = self.client.get_extra_info("peername")
        self.conn = Connection(
            id=proxy._connection_ids,
            parameters=packet.parameters(),
            client=(peer[0], peer[1]) if isinstance(peer, tuple) else None,
            opened=time.perf_counter(),
        )
        proxy.connections[self.conn.id] = self.conn
        self.startup_packet = packet.raw
        self.reader = wire.FrontendReader(self.startup.buffer)
        framed = self.reader.take()
        self.pending.extend(framed)
        self.pending_bytes += sum(len(raw) for _, raw in framed)
        self.pause("connecting")
        proxy._spawn(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        proxy = self.proxy
        socket_path = proxy.upstream_socket
        try:
            if socket_path is not None:
                connecting = loop.create_unix_connection(lambda: _Upstream(self), socket_path)
            else:
                connecting = loop.create_connection(
                    lambda: _Upstream(self), proxy.upstream_host, proxy.upstream_port
                )
            await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            if self.client is not None and not self.closing:
                where = f"{proxy.upstream_host}:{proxy.upstream_port}"
                self.client.write(
                    wire.error_response(
                        "FATAL", "08006", f"racebench proxy: cannot reach {where}: {error}"
                    )
                )
            self.close()

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closing:
            transport.close()
            return
        _nodelay(transport)
        self.upstream = transport
        transport.write(self.startup_packet)
        self.resume("connecting")
        self.pump()

    async def forward_cancel(self, packet: wire.StartupPacket) -> None:
        try:
            pid = packet.cancel_key()[0]
            self.proxy.cancel_requests.append(pid)
            conn = self.proxy.by_pid(pid)
            if conn is not None:
                conn.cancel_requests += 1
            await self.proxy._send_packet(packet.raw)
        except (OSError, TimeoutError, wire.ProtocolError) as error:
            log.warning("proxy: a CancelRequest did not reach the server: %s", error)
        finally:
            self.close()

    # --- client -> server -----------------------------------------------------------------

    def pump(self) -> None:
        """Handle the framed client messages, up to a held statement; write what is ready."""
        if self.upstream is None:
            return  # still connecting: upstream_made pumps
        pending = self.pending
        while pending and self.hold is None and not self.closing:
            kind, raw = pending.popleft()
            self.pending_bytes -= len(raw)
            self.from_client(kind, raw)
        self.flush()
        if self.pending_bytes <= MAX_BACKLOG_BYTES:
            self.resume("backlog")

    def from_client(self, kind: int, raw: bytes) -> None:
        if kind in _DEFERRED:
            if kind == Frontend.PARSE:
                name, sql = wire.parse_parse(raw)
                self.prepared[name] = sql
            elif kind == Frontend.BIND:
                portal, name, params = wire.parse_bind(raw)
                self.portals[portal] = (name, self.prepared.get(name, ""), params)
            elif kind == Frontend.CLOSE:
                what, name = wire.parse_close(raw)
                (self.prepared if what == "S" else self.portals).pop(name, None)
            self.unit.append(raw)
            self.unit_slots.append(_Slot(kind, None, self.copy_ends))
            self.unit_size += len(raw)
            if self.unit_size > MAX_DEFERRED_BYTES:
                self.release()
            return
        if kind == Frontend.EXECUTE:
            portal = wire.parse_execute(raw)[0]
            name, sql, params = self.portals.get(portal, ("", "", 0))
            stmt = self.statement(sql, "extended", params=params, name=name, portal=portal)
        elif kind == Frontend.QUERY:
            stmt = self.statement(wire.parse_query(raw), "simple")
        else:
            # Sync, Flush, FunctionCall, COPY's messages, Terminate, authentication: they go
            # now, and take whatever was deferred with them.
            if kind in (Frontend.COPY_DONE, Frontend.COPY_FAIL):
                self.copy_ends += 1
            self.unit.append(raw)
            if kind in _SYNCS:
                self.unit_slots.append(_Slot(kind, None, self.copy_ends))
            self.release()
            return
        self.unit.append(raw)
        self.unit_slots.append(_Slot(kind, stmt, self.copy_ends))
        gate = self.proxy.gate
        if gate is None:
            self.release()
            return
        self.flush()  # what came before it goes now; the statement waits for the gate
        self.hold = self.proxy._spawn(self.held(gate, stmt))

    async def held(self, gate: Gate, stmt: Statement) -> None:
        assert self.conn is not None
        try:
            await gate.before(self.conn, stmt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "proxy: the gate failed on statement %d; closing connection %d",
                stmt.id,
                stmt.connection_id,
            )
            self.hold = None
            self.close()
            return
        self.hold = None
        if self.closing:
            return
        self.release()
        self.pump()

    def statement(
        self,
        sql: str,
        protocol: Literal["simple", "extended"],
        params: int | None = None,
        name: str | None = None,
        portal: str | None = None,
        part: int = 0,
    ) -> Statement:
        assert self.conn is not None
        proxy = self.proxy
        proxy.statement_count += 1
        stmt = Statement(
            id=proxy.statement_count,
            connection_id=self.conn.id,
            backend_pid=self.conn.backend_pid,
            sql=sql,
            protocol=protocol,
            params=params,
            name=name,
            portal=portal,
            part=part,
        )
        if proxy.keep:
            self.conn.statements.append(stmt)
            proxy.statements.append(stmt)
        return stmt

    def release(self) -> None:
        """The deferred messages are ready to go."""
        if self.unit:
            self.out.extend(self.unit)
            self.out_slots.extend(self.unit_slots)
            self.unit.clear()
            self.unit_slots.clear()
            self.unit_size = 0

    def flush(self) -> None:
        if not self.out or self.upstream is None:
            return
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        if self.upstream_closed or self.upstream.is_closing():
            self.out_slots.clear()
            return
        now = time.perf_counter()
        for slot in self.out_slots:
            if slot.stmt is not None:
                slot.stmt.started = now
        self.queue.extend(self.out_slots)
        self.out_slots.clear()
        self.upstream.write(data)

    # --- server -> client -----------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        now = time.perf_counter()
        client = self.client
        if client is not None and not client.is_closing():
            client.write(data)
        try:
            for kind, body in self.scanner.feed(data):
                self.from_server_message(kind, body, now)
        except Exception:
            log.exception("proxy: closing a connection on bad server data")
            self.close()

    def from_server_message(self, kind: int, body: bytes, now: float) -> None:
        queue = self.queue
        head = queue[0] if queue else None
        if kind == Backend.COMMAND_COMPLETE:
            self.result(head, now, tag=wire.parse_command_tag(body))
        elif kind == Backend.READY_FOR_QUERY:
            self.ready(TxnStatus(chr(body[0])), now)
        elif kind == Backend.ERROR_RESPONSE:
            self.error(head, now, wire.parse_fields(body))
        elif kind in _ANSWERS:
            if head is not None and head.kind == _ANSWERS[kind]:
                queue.popleft()
        elif kind in (Backend.ROW_DESCRIPTION, Backend.NO_DATA):
            if head is not None and head.kind == Frontend.DESCRIBE:
                queue.popleft()  # (a Query's RowDescription is not a Describe's answer)
        elif kind == Backend.EMPTY_QUERY_RESPONSE:
            self.result(head, now)
        elif kind == Backend.PORTAL_SUSPENDED:
            self.result(head, now, suspended=True)
        elif kind == Backend.COPY_IN_RESPONSE:
            self.copy_in(head)
        elif kind == Backend.BACKEND_KEY_DATA:
            assert self.conn is not None
            self.conn.backend_pid, self.conn.secret_key = wire.parse_backend_key(body)
            self.proxy._by_pid[self.conn.backend_pid] = self.conn
        elif kind == Backend.PARAMETER_STATUS:
            assert self.conn is not None
            name, value = wire.parse_parameter_status(body)
            self.conn.settings[name] = value
        elif kind == Backend.NOTICE_RESPONSE:
            hook = self.proxy.on_notice
            if hook is not None and self.conn is not None:
                self.proxy._call(hook, self.conn, wire.parse_fields(body))

    def current(self, head: _Slot | None, now: float) -> Statement | None:
        """The statement a result belongs to: the head Execute, or the head Query's current
        part (a new part once the previous one ended)."""
        if head is None or head.stmt is None:
            return None
        stmt = head.stmt
        if head.kind == Frontend.QUERY and stmt.ended is not None:
            previous = stmt
            stmt = self.statement(previous.sql, "simple", part=previous.part + 1)
            stmt.started = previous.ended  # the server runs a Query's statements in turn
            head.stmt = stmt
        return stmt

    def result(
        self, head: _Slot | None, now: float, tag: str | None = None, suspended: bool = False
    ) -> None:
        stmt = self.current(head, now)
        if stmt is None:
            return
        assert head is not None
        if head.kind == Frontend.EXECUTE:
            self.queue.popleft()
        stmt.tag = tag
        stmt.rows = wire.rows_from_tag(tag) if tag else None
        stmt.suspended = suspended
        self.end(stmt, now, counted=True)
        if tag in TRANSACTION_ENDS:
            self.txn_open = False

    def error(self, head: _Slot | None, now: float, fields: dict[str, str]) -> None:
        if head is None:
            return  # e.g. a FATAL on an idle connection
        if head.kind == Frontend.QUERY:
            stmt = self.current(head, now)
            assert stmt is not None
            stmt.error, stmt.message = fields.get("C"), fields.get("M")
            self.end(stmt, now, counted=True)
            return
        # The extended protocol: the server skips everything up to the next Sync. The error
        # is the first statement's among them (its own, or its Parse's or Bind's).
        failed = False
        queue = self.queue
        while queue and queue[0].kind not in _SYNCS:
            stmt = queue.popleft().stmt
            if stmt is None:
                continue
            if not failed:
                failed = True
                stmt.error, stmt.message = fields.get("C"), fields.get("M")
                self.end(stmt, now, counted=True)
            else:
                stmt.skipped = True
                self.end(stmt, now)

    def ready(self, status: TxnStatus, now: float) -> None:
        queue = self.queue
        while queue:
            slot = queue.popleft()
            if slot.stmt is not None and slot.stmt.ended is None:
                slot.stmt.skipped = True
                self.end(slot.stmt, now)
            if slot.kind in _SYNCS:
                break
        conn = self.conn
        assert conn is not None
        previous, conn.status = conn.status, status
        self.txn_open = status != TxnStatus.IDLE
        proxy = self.proxy
        if not self.opened_hook_called:
            self.opened_hook_called = True
            if proxy.on_open is not None:
                proxy._call(proxy.on_open, conn)
        if proxy.on_ready is not None:
            proxy._call(proxy.on_ready, conn, previous)

    def copy_in(self, head: _Slot | None) -> None:
        """The server is in copy-in mode until the client's next CopyDone or CopyFail: it
        ignores the Syncs the client sent after the Execute and before those (libpq sends
        another Sync after CopyDone), so they will get no ReadyForQuery."""
        if head is None or head.kind != Frontend.EXECUTE:
            return
        self.queue = deque(
            [head]
            + [
                slot
                for slot in list(self.queue)[1:]
                if not (slot.kind == Frontend.SYNC and slot.copy_ends == head.copy_ends)
            ]
        )

    def end(self, stmt: Statement, now: float, counted: bool = False) -> None:
        """A statement ended; `counted`: it ran, so it belongs to a transaction."""
        if counted:
            assert self.conn is not None
            if not self.txn_open:
                self.conn.txn += 1
                self.txn_open = True
            stmt.txn = self.conn.txn
        stmt._end(now)
        hook = self.proxy.on_statement_done
        if hook is not None:
            self.proxy._call(hook, stmt)

    # --- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client now; the server once it has read a Terminate (or end of file) and
        hung up, so that `finished` resolves after its backend exited."""
        if self.closing:
            return
        self.closing = True
        if self.hold is not None:
            self.hold.cancel()
            self.hold = None
        if self.client is not None:
            self.client.close()
        upstream = self.upstream
        if upstream is None:
            self.done()  # no server yet (a connect still running is cancelled by stop())
        elif not self.upstream_closed and not upstream.is_closing():
            upstream.write(wire.terminate())
            # A server skipping to the next Sync after an error ignores a Terminate: the end
            # of file after it reaches it anyway.
            if upstream.can_write_eof():
                try:
                    upstream.write_eof()
                except OSError:  # the server has hung up already: its connection_lost follows
                    upstream.abort()

    def upstream_lost(self) -> None:
        self.upstream_closed = True
        self.close()
        self.done()

    def abort(self) -> None:
        """stop(): the server did not hang up in time."""
        if self.upstream is not None:
            self.upstream.abort()
        self.done()

    def busy_upstream(self) -> bool:
        """Something written upstream is still unanswered."""
        return bool(self.queue) and not self.upstream_closed

    def done(self) -> None:
        if self.finished.done():
            return
        self.finished.set_result(None)
        self.proxy._live.discard(self)
        now = time.perf_counter()
        for slot in [*self.queue, *self.out_slots, *self.unit_slots]:
            if slot.stmt is not None and slot.stmt.ended is None:
                slot.stmt.aborted = True
                self.end(slot.stmt, now)
        self.queue.clear()
        conn = self.conn
        if conn is None:
            return
        conn.closed = now
        proxy = self.proxy
        if conn.backend_pid is not None and proxy._by_pid.get(conn.backend_pid) is conn:
            del proxy._by_pid[conn.backend_pid]
        if not proxy.keep:
            proxy.connections.pop(conn.id, None)
        if self.opened_hook_called and proxy.on_close is not None:
            proxy._call(proxy.on_close, conn)


class Proxy:
    """Relays PostgreSQL connections from listen_host:listen_port (TCP) to the upstream
    server (TCP, or a Unix socket when upstream_host is a directory, as in libpq), recording
    each statement (see the module's docstring). `keep=False` keeps no transcript (live
    connections and the counts only), for long runs."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        *,
        gate: Gate | None = None,
        keep: bool = True,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.gate = gate
        self.keep = keep
        self.on_open: ConnectionHook | None = None
        self.on_close: ConnectionHook | None = None
        self.on_ready: ReadyHook | None = None
        self.on_statement_done: StatementHook | None = None
        self.on_notice: NoticeHook | None = None
        self.connections: dict[int, Connection] = {}
        self.statements: list[Statement] = []
        self.statement_count = 0
        self.cancel_requests: list[int] = []  # the backend pid of each, in order
        self._connection_ids = 0
        self._by_pid: dict[int, Connection] = {}
        self._live: set[_Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port it listens on (listen_port, or the one the system chose for 0)."""
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def connection_count(self) -> int:
        return self._connection_ids

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self), self.listen_host, self.listen_port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close everything and wait until every server connection hung up (see the module's
        docstring); idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = list(self._live)
        for session in sessions:
            session.close()
        busy = [
            s.conn
            for s in sessions
            if s.busy_upstream() and s.conn is not None and s.conn.backend_pid is not None
        ]
        await asyncio.gather(*(self._cancel(conn) for conn in busy), return_exceptions=True)
        waiting = [s.finished for s in sessions if not s.finished.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=STOP_TIMEOUT_S)
        for session in sessions:
            if not session.finished.done():
                log.warning("proxy: a server connection did not close in time; aborted")
                session.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def upstream_socket(self) -> str | None:
        """The server's Unix socket, when upstream_host is a directory (as in libpq)."""
        if self.upstream_host.startswith("/"):
            return f"{self.upstream_host.rstrip('/')}/.s.PGSQL.{self.upstream_port}"
        return None

    def url_for(self, database_url: str) -> str:
        """`database_url` pointed at the proxy: its host and port replaced (and any host,
        hostaddr or port query parameter dropped); user, password, database and the other
        parameters kept."""
        parts = urlsplit(database_url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            self.listen_host, self.listen_host
        )
        if ":" in host:
            host = f"[{host}]"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if k not in ("host", "hostaddr", "port")]
            if len(kept) != len(pairs):
                query = urlencode(kept, quote_via=quote)
        return urlunsplit(
            (parts.scheme, f"{userinfo}{at}{host}:{self.port}", parts.path, query, parts.fragment)
        )

    def by_pid(self, pid: int) -> Connection | None:
        """The open connection relayed to backend `pid`."""
        return self._by_pid.get(pid)

    # --- internals ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _call(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            log.exception("proxy: a hook failed")

    async def _send_packet(self, packet: bytes) -> None:
        """Send an untyped packet (a CancelRequest) on a fresh server connection, and wait
        until the server hangs up: it has then acted on it."""

        async def exchange() -> None:
            if self.upstream_socket is not None:
                reader, writer = await asyncio.open_unix_connection(self.upstream_socket)
            else:
                reader, writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            try:
                writer.write(packet)
                await writer.drain()
                await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        await asyncio.wait_for(exchange(), CANCEL_TIMEOUT_S)

    async def _cancel(self, conn: Connection) -> None:
        if conn.backend_pid is not None and conn.secret_key is not None:
            await self._send_packet(wire.cancel_request(conn.backend_pid, conn.secret_key))


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[IPv6]:PORT') -> (host, port); ValueError saying what is wrong."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    return host, int(port)


async def serve(
    listen: tuple[str, int],
    upstream: tuple[str, int],
    started: Callable[[Proxy], None],
) -> Proxy:
    """Run a proxy (keeping no transcript) until SIGINT or SIGTERM; return it stopped, for
    its counts. `started(proxy)` once it listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Proxy(upstream[0], upstream[1], listen[0], listen[1], keep=False) as proxy:
            started(proxy)
            await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return proxy
