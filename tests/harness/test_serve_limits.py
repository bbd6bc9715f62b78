"""`racebench serve` bounds slow and huge clients: raw sockets against a real process."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from racebench.harness.service_process import RunningService, running_service
from racebench.serve import MAX_HEAD_BYTES

# Short for the test; the default is 10 s.
READ_TIMEOUT_S = 2.0
# How much later than the configured timeout the server may close (a loaded 2-core machine).
SLACK_S = 3.0


@pytest.fixture(scope="module")
def service(database_url: str) -> Iterator[RunningService]:
    env = {"RACEBENCH_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    with running_service(strategy="for_update", database_url=database_url, extra_env=env) as s:
        yield s


def connect(service: RunningService) -> socket.socket:
    url = urlsplit(service.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=READ_TIMEOUT_S + SLACK_S)
    return sock


def send(sock: socket.socket, data: bytes) -> None:
    # The server may close before it has read everything: that is the point.
    with contextlib.suppress(OSError):
        sock.sendall(data)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took (the socket's
    timeout bounds each read; a server that never closes fails the test with a timeout)."""
    start = time.monotonic()
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - start


def test_a_huge_header_is_refused_quickly(service: RunningService) -> None:
    with connect(service) as sock:
        start = time.monotonic()
        send(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 * 1024 * 1024))
        received, _ = read_until_closed(sock)
        elapsed = time.monotonic() - start
    assert received == b"" or received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert elapsed < READ_TIMEOUT_S, elapsed


def test_a_head_over_the_limit_in_one_piece_is_refused(service: RunningService) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    with connect(service) as sock:
        send(sock, head)
        received, elapsed = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert b'"head_too_large"' in received
    assert elapsed < READ_TIMEOUT_S, elapsed


def test_a_head_under_the_limit_is_served(service: RunningService) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: " + b"a" * 4096
    with connect(service) as sock:
        send(sock, head + b"\r\n\r\n")
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received[:200]


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Le", id="half-a-head"),
        pytest.param(
            b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 40\r\n\r\n{"amount":',
            id="half-a-body",
        ),
    ],
)
def test_a_request_that_never_completes_is_closed_within_the_timeout(
    service: RunningService, partial: bytes
) -> None:
    with connect(service) as sock:
        send(sock, partial)
        received, elapsed = read_until_closed(sock)
    assert READ_TIMEOUT_S - 0.5 <= elapsed < READ_TIMEOUT_S + SLACK_S, elapsed
    if partial:
        assert received.startswith(b"HTTP/1.1 408 "), received[:200]


def test_expect_100_continue_without_a_body_is_answered_within_the_timeout(
    service: RunningService,
) -> None:
    head = (
        b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20\r\nExpect: 100-continue\r\n\r\n"
    )
    with connect(service) as sock:
        send(sock, head)
        received, elapsed = read_until_closed(sock)
    assert elapsed < READ_TIMEOUT_S + SLACK_S, elapsed
    assert b"HTTP/1.1 408 " in received, received[:300]
