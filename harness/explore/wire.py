"""PostgreSQL wire protocol (version 3) framing: just enough to proxy a connection and know
what it runs.

After the startup packet, every message in either direction is one type byte, a big-endian
int32 length that counts itself but not the type byte, and a body. The startup packet and its
stand-ins (SSLRequest, GSSENCRequest, CancelRequest) have no type byte: an int32 length, an
int32 code, a body. Nothing here does I/O: the readers are fed bytes and hand back messages,
and the writers return bytes.

- `StartupReader` frames what a client sends first (`StartupPacket`).
- `FrontendReader` frames the client's typed messages, whole (the proxy holds and forwards
  them one by one); `parse_*` read the few bodies the proxy needs (Query, Parse, Bind,
  Execute, Close).
- `BackendScanner` walks the server's stream without copying it: it hands back only the
  message types asked for (with their bodies) and skips the rest (DataRow, CopyData...) by
  their lengths, across chunk boundaries.
- The writers (`startup_message`, `query`, `parse`, `bind`, `execute`, `sync`,
  `error_response`...) build messages, for the proxy's own answers and for tests.

Reference: https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

INT16 = struct.Struct("!h")
INT32 = struct.Struct("!i")
UINT32 = struct.Struct("!I")

# The codes of the untyped packets a client may open with.
PROTOCOL_3_0 = 196608  # 3 << 16: StartupMessage of protocol 3.0
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680

# A startup packet is small; anything this long is not PostgreSQL talking.
MAX_STARTUP_LENGTH = 10_000
# PostgreSQL refuses a message longer than 1 GB; past that the stream is garbage.
MAX_MESSAGE_LENGTH = 0x3FFF_FFFF

NOT_SUPPORTED = b"N"  # the answer to SSLRequest and GSSENCRequest: talk plainly


class Frontend(IntEnum):
    """The type bytes of the messages a client sends after the startup packet."""

    BIND = ord("B")
    CLOSE = ord("C")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    COPY_FAIL = ord("f")
    DESCRIBE = ord("D")
    EXECUTE = ord("E")
    FLUSH = ord("H")
    FUNCTION_CALL = ord("F")
    PARSE = ord("P")
    PASSWORD = ord("p")  # also SASLInitialResponse, SASLResponse, GSSResponse
    QUERY = ord("Q")
    SYNC = ord("S")
    TERMINATE = ord("X")


class Backend(IntEnum):
    """The type bytes of the messages a server sends."""

    AUTHENTICATION = ord("R")
    BACKEND_KEY_DATA = ord("K")
    BIND_COMPLETE = ord("2")
    CLOSE_COMPLETE = ord("3")
    COMMAND_COMPLETE = ord("C")
    COPY_BOTH_RESPONSE = ord("W")
    COPY_DATA = ord("d")
    COPY_DONE = ord("c")
    COPY_IN_RESPONSE = ord("G")
    COPY_OUT_RESPONSE = ord("H")
    DATA_ROW = ord("D")
    EMPTY_QUERY_RESPONSE = ord("I")
    ERROR_RESPONSE = ord("E")
    FUNCTION_CALL_RESPONSE = ord("V")
    NEGOTIATE_PROTOCOL_VERSION = ord("v")
    NO_DATA = ord("n")
    NOTICE_RESPONSE = ord("N")
    NOTIFICATION_RESPONSE = ord("A")
    PARAMETER_DESCRIPTION = ord("t")
    PARAMETER_STATUS = ord("S")
    PARSE_COMPLETE = ord("1")
    PORTAL_SUSPENDED = ord("s")
    READY_FOR_QUERY = ord("Z")
    ROW_DESCRIPTION = ord("T")


class ProtocolError(ValueError):
    """Bytes that are not the PostgreSQL protocol (a bad length, a truncated body)."""


# --- strings ---------------------------------------------------------------------------------


def cstring(body: bytes | bytearray, start: int = 0) -> tuple[str, int]:
    """The NUL-terminated string at `start`, and the offset just past its NUL."""
    end = body.find(b"\0", start)
    if end < 0:
        raise ProtocolError("a string without its terminating NUL")
    return bytes(body[start:end]).decode("utf-8", "replace"), end + 1


def _cstr(text: str) -> bytes:
    return text.encode() + b"\0"


# --- the startup packet ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartupPacket:
    """What a client opens with: code is PROTOCOL_3_0 (or another version) for a
    StartupMessage, else SSL_REQUEST_CODE, GSSENC_REQUEST_CODE or CANCEL_REQUEST_CODE.
    `raw` is the whole packet, length included, to forward as it came."""

    code: int
    raw: bytes

    @property
    def body(self) -> bytes:
        return self.raw[8:]

    @property
    def is_startup(self) -> bool:
        return self.code >> 16 == 3

    def parameters(self) -> dict[str, str]:
        """A StartupMessage's parameters (user, database, application_name...)."""
        found: dict[str, str] = {}
        body, pos = self.body, 0
        while pos < len(body) and body[pos] != 0:
            key, pos = cstring(body, pos)
            value, pos = cstring(body, pos)
            found[key] = value
        return found

    def cancel_key(self) -> tuple[int, bytes]:
        """A CancelRequest's backend pid and secret key (4 bytes in protocol 3.0, up to 256
        in 3.2)."""
        if self.code != CANCEL_REQUEST_CODE or len(self.raw) < 16:
            raise ProtocolError("not a CancelRequest")
        return INT32.unpack_from(self.raw, 8)[0], self.raw[12:]


class StartupReader:
    """Frames the untyped packets at the start of a client connection."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[StartupPacket]:
        """The packets completed by `data`; the rest waits for the next feed. What follows a
        StartupMessage is typed: take it from `.buffer` and stop feeding this reader."""
        self.buffer += data
        packets: list[StartupPacket] = []
        while len(self.buffer) >= 8:
            length = UINT32.unpack_from(self.buffer, 0)[0]
            if not 8 <= length <= MAX_STARTUP_LENGTH:
                raise ProtocolError(f"a startup packet of {length} bytes")
            if len(self.buffer) < length:
                break
            raw = bytes(self.buffer[:length])
            del self.buffer[:length]
            packet = StartupPacket(UINT32.unpack_from(raw, 4)[0], raw)
            packets.append(packet)
            if packet.is_startup or packet.code == CANCEL_REQUEST_CODE:
                break  # typed messages (or nothing) follow
        return packets


def startup_message(parameters: Mapping[str, str], code: int = PROTOCOL_3_0) -> bytes:
    body = INT32.pack(code) + b"".join(_cstr(k) + _cstr(v) for k, v in parameters.items())
    body += b"\0"
    return INT32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return INT32.pack(8) + INT32.pack(SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return INT32.pack(8) + INT32.pack(GSSENC_REQUEST_CODE)


def cancel_request(pid: int, secret: bytes) -> bytes:
    return INT32.pack(12 + len(secret)) + INT32.pack(CANCEL_REQUEST_CODE) + INT32.pack(pid) + secret


# --- typed messages --------------------------------------------------------------------------


def message(kind: int, body: bytes = b"") -> bytes:
    """A typed message: type byte, length, body."""
    return bytes((kind,)) + INT32.pack(len(body) + 4) + body


class FrontendReader:
    """Frames a client's typed messages whole: each comes back as (type, raw bytes with its
    header), to be forwarded as it came."""

    def __init__(self, data: bytes | bytearray = b"") -> None:
        self.buffer = bytearray(data)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        return self.take()

    def take(self) -> list[tuple[int, bytes]]:
        buf = self.buffer
        n = len(buf)
        pos = 0
        found: list[tuple[int, bytes]] = []
        while n - pos >= 5:
            length = UINT32.unpack_from(buf, pos + 1)[0]
            if not 4 <= length <= MAX_MESSAGE_LENGTH:
                raise ProtocolError(f"a {chr(buf[pos])!r} message of length {length}")
            end = pos + 1 + length
            if end > n:
                break
            found.append((buf[pos], bytes(buf[pos:end])))
            pos = end
        if pos:
            del buf[:pos]
        return found


class BackendScanner:
    """Walks a server's stream and hands back only the messages whose type is in `wanted`, as
    (type, body); the others are skipped by their length, even when a chunk ends inside them,
    so a long result costs a header read per row and no copy. Only a wanted message or a
    header cut by a chunk's end is kept until the next chunk."""

    __slots__ = ("_partial", "_skip", "wanted")

    def __init__(self, wanted: frozenset[int]) -> None:
        self.wanted = wanted
        self._partial = b""
        self._skip = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        found: list[tuple[int, bytes]] = []
        pos = 0
        n = len(data)
        if self._skip:
            if self._skip >= n:
                self._skip -= n
                return found
            pos, self._skip = self._skip, 0
        if self._partial:
            data = self._partial + data[pos:]
            self._partial = b""
            pos, n = 0, len(data)
        wanted = self.wanted
        unpack = UINT32.unpack_from
        while n - pos >= 5:
            kind = data[pos]
            length = unpack(data, pos + 1)[0]
            if length < 4:
                raise ProtocolError(f"a {chr(kind)!r} message of length {length}")
            end = pos + 1 + length
            if kind in wanted:
                if end > n:
                    break
                found.append((kind, data[pos + 5 : end]))
            elif end > n:
                self._skip = end - n
                return found
            pos = end
        if pos < n:
            self._partial = data[pos:]
        return found


# --- bodies the proxy reads ------------------------------------------------------------------


def parse_query(body: bytes) -> str:
    """Query: the SQL text."""
    return cstring(body, 5)[0]


def parse_parse(body: bytes) -> tuple[str, str]:
    """Parse: (statement name, SQL); '' names the unnamed statement."""
    name, pos = cstring(body, 5)
    sql, _ = cstring(body, pos)
    return name, sql


def parse_bind(body: bytes) -> tuple[str, str, int]:
    """Bind: (portal name, statement name, number of parameter values)."""
    portal, pos = cstring(body, 5)
    statement, pos = cstring(body, pos)
    formats = INT16.unpack_from(body, pos)[0]
    pos += 2 + 2 * formats
    return portal, statement, INT16.unpack_from(body, pos)[0]


def parse_execute(body: bytes) -> tuple[str, int]:
    """Execute: (portal name, row limit; 0 = all rows)."""
    portal, pos = cstring(body, 5)
    return portal, INT32.unpack_from(body, pos)[0]


def parse_close(body: bytes) -> tuple[str, str]:
    """Close (and Describe): ('S' statement or 'P' portal, its name)."""
    return chr(body[5]), cstring(body, 6)[0]


# The server's bodies come without their header (BackendScanner.feed).


def parse_backend_key(body: bytes) -> tuple[int, bytes]:
    """BackendKeyData: (backend pid, secret key)."""
    return INT32.unpack_from(body, 0)[0], bytes(body[4:])


def parse_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse and NoticeResponse: field code -> value ('C' SQLSTATE, 'M' message,
    'S' severity...)."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        fields[code], pos = cstring(body, pos + 1)
    return fields


def parse_parameter_status(body: bytes) -> tuple[str, str]:
    """ParameterStatus: (name, value), e.g. ('application_name', 'shop')."""
    name, pos = cstring(body)
    return name, cstring(body, pos)[0]


def parse_command_tag(body: bytes) -> str:
    """CommandComplete: the tag, e.g. 'UPDATE 1', 'INSERT 0 3', 'SELECT 2', 'COMMIT'."""
    return cstring(body)[0]


# The tags whose last word counts rows (INSERT's is the second of two numbers).
ROW_COUNT_TAGS = frozenset(
    {"INSERT", "UPDATE", "DELETE", "SELECT", "MERGE", "MOVE", "FETCH", "COPY"}
)


def rows_from_tag(tag: str) -> int | None:
    """The rows a command tag reports ('UPDATE 3' -> 3), or None for a tag without a count."""
    words = tag.split()
    if len(words) >= 2 and words[0] in ROW_COUNT_TAGS and words[-1].isdigit():
        return int(words[-1])
    return None


# --- writers ---------------------------------------------------------------------------------


def query(sql: str) -> bytes:
    return message(Frontend.QUERY, _cstr(sql))


def parse(sql: str, name: str = "", param_types: Sequence[int] = ()) -> bytes:
    types = b"".join(INT32.pack(oid) for oid in param_types)
    return message(Frontend.PARSE, _cstr(name) + _cstr(sql) + INT16.pack(len(param_types)) + types)


def bind(params: Sequence[str | None] = (), statement: str = "", portal: str = "") -> bytes:
    """Bind with text parameters and text results."""
    values = b"".join(
        INT32.pack(-1) if v is None else INT32.pack(len(v.encode())) + v.encode() for v in params
    )
    body = _cstr(portal) + _cstr(statement) + INT16.pack(0) + INT16.pack(len(params)) + values
    return message(Frontend.BIND, body + INT16.pack(0))


def describe(kind: str = "P", name: str = "") -> bytes:
    return message(Frontend.DESCRIBE, kind.encode() + _cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return message(Frontend.EXECUTE, _cstr(portal) + INT32.pack(max_rows))


def close(kind: str = "S", name: str = "") -> bytes:
    return message(Frontend.CLOSE, kind.encode() + _cstr(name))


def sync() -> bytes:
    return message(Frontend.SYNC)


def flush() -> bytes:
    return message(Frontend.FLUSH)


def terminate() -> bytes:
    return message(Frontend.TERMINATE)


def error_response(severity: str, sqlstate: str, text: str) -> bytes:
    """An ErrorResponse (the proxy's own, e.g. when the server cannot be reached)."""
    fields = b"".join(
        code.encode() + _cstr(value)
        for code, value in (("S", severity), ("V", severity), ("C", sqlstate), ("M", text))
    )
    return message(Backend.ERROR_RESPONSE, fields + b"\0")


def command_complete(tag: str) -> bytes:
    return message(Backend.COMMAND_COMPLETE, _cstr(tag))


def ready_for_query(status: str) -> bytes:
    return message(Backend.READY_FOR_QUERY, status.encode())


def backend_key_data(pid: int, secret: bytes) -> bytes:
    return message(Backend.BACKEND_KEY_DATA, INT32.pack(pid) + secret)
