"""gunicorn's settings for the shop (read from this folder by default).

SHOP_THREADS: threads per worker process (default 16; the workers are the command's). One
thread a process, with more processes, shares two cores more evenly under a benchmark: no
process's threads then queue on its own interpreter lock.

gunicorn writes a response's headers and its body in two sends; with Nagle's algorithm on, the
body then waits for the client's delayed ACK of the headers (40 ms on Linux). TCP_NODELAY on
the listening socket is inherited by every connection it accepts.
"""

from __future__ import annotations

import os
import socket
from typing import Any

threads = int(os.environ.get("SHOP_THREADS", "16"))


def when_ready(server: Any) -> None:
    for listener in server.LISTENERS:
        listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# Stopped (SIGINT, as racebench stops what it started), a worker whose threads still wait on a
# kept-alive connection would hold the shutdown until they time out; past this many seconds
# the arbiter kills it. A capture in flight takes milliseconds.
graceful_timeout = 2
