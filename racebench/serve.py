"""`racebench serve`: the reference service under uvicorn, N worker processes.

uvicorn's httptools protocol bounds neither a request's head nor the time its head and body
take to arrive; LimitedHttpToolsProtocol adds both, so that a slow or huge client costs a
bounded amount of memory, CPU and connection time:

- a request line and headers larger than MAX_HEAD_BYTES are answered 431 and the connection
  closed, without reading the rest;
- a request whose head and body have not fully arrived REQUEST_READ_TIMEOUT_S after it began
  (after the connection opened, for the first one) is answered 408 and the connection closed.
  That covers a slow sender, a half-sent request and an `Expect: 100-continue` whose body
  never comes;
- an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from racebench.console import console as make_console
from racebench.harness.database import render, server
from racebench.reference_service.config import Settings
from racebench.reference_service.errors import error_body
from racebench.reference_service.strategies import get_strategy

console = make_console()

# Request line and headers together; ours are a few hundred bytes (h11's default limit).
MAX_HEAD_BYTES = int(os.environ.get("RACEBENCH_MAX_HEAD_BYTES", 16 * 1024))
# From the first byte of a request (or the connection's start) to its last byte.
REQUEST_READ_TIMEOUT_S = float(os.environ.get("RACEBENCH_REQUEST_READ_TIMEOUT_S", 10.0))
# An idle connection between requests (uvicorn's default, said here).
KEEP_ALIVE_TIMEOUT_S = 5


class _HeadTooLarge(Exception):
    pass


def _refusal(status: bytes, code: str, message: str) -> bytes:
    """A whole response that closes the connection, with the service's JSON error body."""
    body = json.dumps(error_body(code, message)).encode()
    head = b"HTTP/1.1 %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        len(body),
    )
    return head + b"connection: close\r\n\r\n" + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head size limit and a request read timeout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for (the rest of) a request's head
        self._head_seen = 0  # raw bytes received while in the head
        self._head_parsed = 0  # request target and header bytes, as parsed
        self._head_too_large = False
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_seen += len(data)
        super().data_received(data)
        if self._in_head and self._head_seen > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_parsed = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_parsed > MAX_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # stops the parser; data_received answers (send_400_response)
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_seen = True, 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self._disarm()
        self.transport.write(
            _refusal(
                b"431 Request Header Fields Too Large",
                "head_too_large",
                f"the head is over {MAX_HEAD_BYTES} bytes",
            )
        )
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(REQUEST_READ_TIMEOUT_S, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            if self._head_seen or self.cycle is not None:  # a request began: say why it ends
                self.transport.write(
                    _refusal(
                        b"408 Request Timeout",
                        "request_timeout",
                        f"the request did not arrive within {REQUEST_READ_TIMEOUT_S:g} s",
                    )
                )
            if self.cycle is not None:
                self.cycle.response_complete = True  # the app's answer, if any, is dropped
        self.transport.close()


def serve(*, strategy: str, host: str, port: int, workers: int, database_url: str | None) -> None:
    get_strategy(strategy)  # an unknown name fails here, with the list of valid ones
    with server(database_url) as (url, embedded):
        os.environ["DATABASE_URL"] = render(url)
        os.environ["RACEBENCH_LOCK_STRATEGY"] = strategy
        settings = Settings()
        console.print(
            f"racebench serve: strategy [bold]{strategy}[/], "
            f"http://{host}:{port}, {workers} worker(s)\n"
            f"  database      {url.render_as_string(hide_password=True)}"
            f"{' (embedded)' if embedded else ''}\n"
            f"  RAZORPAY_KEY_ID={settings.razorpay_key_id}\n"
            f"  RAZORPAY_KEY_SECRET={settings.razorpay_key_secret}\n"
            f"  RAZORPAY_WEBHOOK_SECRET={settings.razorpay_webhook_secret}",
            highlight=False,
            soft_wrap=True,
        )
        uvicorn.run(
            "racebench.reference_service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
            http=LimitedHttpToolsProtocol,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,  # if run with --http h11
        )
