"""wire.py's framing: fed a stream cut anywhere, the readers find the same messages."""

from __future__ import annotations

import pytest

from racebench.harness.explore import wire
from racebench.harness.explore.wire import Backend, Frontend

SERVER_STREAM = b"".join(
    [
        wire.backend_key_data(4242, b"\x01\x02\x03\x04"),
        wire.message(Backend.ROW_DESCRIPTION, b"\x00\x00"),
        wire.message(Backend.DATA_ROW, b"\x00\x01" + b"x" * 300),
        wire.message(Backend.DATA_ROW, b"\x00\x01\x00\x00\x00\x01y"),
        wire.command_complete("SELECT 2"),
        wire.error_response("ERROR", "22012", "division by zero"),
        wire.ready_for_query("T"),
    ]
)
WANTED = frozenset({Backend.BACKEND_KEY_DATA, Backend.COMMAND_COMPLETE, Backend.READY_FOR_QUERY})


def test_the_backend_scanner_finds_the_same_messages_wherever_the_stream_is_cut() -> None:
    whole = wire.BackendScanner(WANTED).feed(SERVER_STREAM)
    assert [chr(k) for k, _ in whole] == ["K", "C", "Z"]
    assert wire.parse_backend_key(whole[0][1]) == (4242, b"\x01\x02\x03\x04")
    assert wire.parse_command_tag(whole[1][1]) == "SELECT 2"
    assert whole[2][1] == b"T"
    for cut in range(1, len(SERVER_STREAM)):
        scanner = wire.BackendScanner(WANTED)
        found = scanner.feed(SERVER_STREAM[:cut]) + scanner.feed(SERVER_STREAM[cut:])
        assert found == whole, cut
    scanner = wire.BackendScanner(WANTED)
    one_byte_at_a_time = [
        m for i in range(len(SERVER_STREAM)) for m in scanner.feed(SERVER_STREAM[i : i + 1])
    ]
    assert one_byte_at_a_time == whole


def test_the_frontend_reader_hands_back_whole_raw_messages() -> None:
    messages = [
        wire.parse("SELECT $1::int", "s1", [23]),
        wire.bind(["7", None], statement="s1", portal="p"),
        wire.describe("P", "p"),
        wire.execute("p", 5),
        wire.close("S", "s1"),
        wire.sync(),
        wire.query("SELECT 1"),
    ]
    stream = b"".join(messages)
    for cut in range(len(stream) + 1):
        reader = wire.FrontendReader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [raw for _, raw in got] == messages, cut
    raw = dict((chr(kind), raw) for kind, raw in wire.FrontendReader().feed(stream))
    assert wire.parse_parse(raw["P"]) == ("s1", "SELECT $1::int")
    assert wire.parse_bind(raw["B"]) == ("p", "s1", 2)
    assert wire.parse_execute(raw["E"]) == ("p", 5)
    assert wire.parse_close(raw["C"]) == ("S", "s1")
    assert wire.parse_query(raw["Q"]) == "SELECT 1"


def test_bind_with_format_codes() -> None:
    body = b"portal\0stmt\0" + wire.INT16.pack(2) + wire.INT16.pack(1) * 2 + wire.INT16.pack(3)
    body += wire.INT32.pack(-1) * 3 + wire.INT16.pack(0)
    assert wire.parse_bind(wire.message(Frontend.BIND, body)) == ("portal", "stmt", 3)


def test_the_startup_reader() -> None:
    startup = wire.startup_message({"user": "u", "database": "d", "application_name": "a"})
    stream = wire.gssenc_request() + wire.ssl_request() + startup + wire.query("SELECT 1")
    reader = wire.StartupReader()
    packets = reader.feed(stream[:3]) + reader.feed(stream[3:])
    assert [p.code for p in packets] == [
        wire.GSSENC_REQUEST_CODE,
        wire.SSL_REQUEST_CODE,
        wire.PROTOCOL_3_0,
    ]
    assert packets[2].is_startup and packets[2].raw == startup
    assert packets[2].parameters() == {"user": "u", "database": "d", "application_name": "a"}
    assert bytes(reader.buffer) == wire.query("SELECT 1")  # typed messages: not its business
    cancel = wire.StartupReader().feed(wire.cancel_request(99, b"\xff" * 4))[0]
    assert cancel.cancel_key() == (99, b"\xff" * 4)
    longer = wire.StartupReader().feed(wire.cancel_request(99, b"k" * 32))[0]  # protocol 3.2
    assert longer.cancel_key() == (99, b"k" * 32)


@pytest.mark.parametrize(
    "stream",
    [wire.INT32.pack(4) + b"\0\0\0\0", wire.INT32.pack(1 << 20) + wire.INT32.pack(1)],
)
def test_a_startup_packet_of_an_impossible_length_is_refused(stream: bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.StartupReader().feed(stream)


def test_a_message_of_an_impossible_length_is_refused() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.FrontendReader().feed(b"Q" + wire.INT32.pack(2))
    with pytest.raises(wire.ProtocolError):
        wire.BackendScanner(WANTED).feed(b"D" + wire.INT32.pack(3))


@pytest.mark.parametrize(
    ("tag", "rows"),
    [
        ("UPDATE 3", 3),
        ("INSERT 0 5", 5),
        ("SELECT 0", 0),
        ("COPY 2", 2),
        ("MERGE 1", 1),
        ("DELETE 10", 10),
        ("COMMIT", None),
        ("ROLLBACK", None),
        ("CREATE TABLE", None),
        ("", None),
    ],
)
def test_rows_from_tag(tag: str, rows: int | None) -> None:
    assert wire.rows_from_tag(tag) == rows


def test_error_fields_and_parameter_status() -> None:
    error = wire.error_response("ERROR", "57014", "canceling statement due to user request")
    fields = wire.parse_fields(error[5:])
    assert (fields["S"], fields["C"], fields["M"]) == (
        "ERROR",
        "57014",
        "canceling statement due to user request",
    )
    assert wire.parse_parameter_status(b"application_name\0shop\0") == ("application_name", "shop")
