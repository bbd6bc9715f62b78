"""Named pause points in the capture path, for a harness to force interleavings.

With no controller installed, `race_point()` returns a shared, already-finished awaitable: no
task switch, no allocation, no lookup. The harness installs a controller to hold an actor at a
point until the schedule releases it (see harness/controller.py). A service started by the harness
for http mode gets RACEBENCH_RACE_GATE instead, and reports each point to the harness over a
local connection (RemoteGate below).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, Protocol


class RacePoint(StrEnum):
    """The named points of the capture path (their values travel to the harness's gate)."""

    AFTER_READ = "capture.after_read"
    """The capture has read the payment and decided it is pending (its write has not happened)."""
    BEFORE_COMMIT = "capture.before_commit"
    """The capture has made all its writes; its commit comes next."""
    ALREADY_CAPTURED = "capture.already_captured"
    """The capture has read the payment and found it captured: it writes nothing (a replay)."""
    AFTER_COMMIT = "transaction.after_commit"
    """A transaction has committed; reported with the moment its COMMIT was sent. A harness
    records it and never holds an actor here."""
    AFTER_ROLLBACK = "transaction.after_rollback"
    """A transaction has ended without committing (an error, a serialization failure, a killed
    backend): its locks are gone. Reported once it has ended; never held."""


HOLDING_POINTS = frozenset({RacePoint.AFTER_READ, RacePoint.BEFORE_COMMIT})
"""The points a schedule may hold an actor at; the others are only reported."""


current_actor: ContextVar[str | None] = ContextVar("racebench_actor", default=None)
"""Which harness actor the running request belongs to (set by the harness, None in service)."""

current_backend: ContextVar[int | None] = ContextVar("racebench_backend", default=None)
"""The PostgreSQL backend pid of the running request's transaction (set by Database.transaction),
so that a harness's fault step can kill the backend of the actor it holds at a race point."""

point_time: ContextVar[float | None] = ContextVar("racebench_point_time", default=None)
"""When the point being reported happened (time.perf_counter(): CLOCK_MONOTONIC, comparable
across the processes of one machine); set by race_point() only when a controller is installed."""


class RaceController(Protocol):
    """Something that decides when an actor that reached a point may go on."""

    def reached(self, point: str, actor: str | None) -> Awaitable[None]: ...


class _Done:
    """An awaitable that finishes at once, without suspending."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


NOOP = _Done()

GATE_ENV = "RACEBENCH_RACE_GATE"
"""host:port of a harness's race gate; set only by the harness when it starts the service."""
ACTOR_HEADER = "x-racebench-actor"
"""The harness's name for the actor a request belongs to. Read only when a gate is configured
(ActorTag in middleware.py), so that a report names its actor whichever worker served it."""
# A worker never waits longer than this for the gate's answer: the harness answers within its
# own schedule timeout (10 s), so this only matters if the harness has gone away.
REMOTE_GATE_TIMEOUT_S = 60.0


class RemoteGate:
    """A controller in another process (the harness's http mode): report, then wait for go.

    Each hit opens one local connection, sends {"point", "actor", "pid", "t", "backend"} (the
    worker's pid, when the point happened, its PostgreSQL backend) as a JSON line and
    waits for a line back. If the gate is unreachable or silent, the worker simply goes on.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)

    def reached(self, point: str, actor: str | None) -> Awaitable[None]:
        return self._report(point, actor)

    async def _report(self, point: str, actor: str | None) -> None:
        try:
            async with asyncio.timeout(REMOTE_GATE_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    message = {
                        "point": point,
                        "actor": actor,
                        "pid": os.getpid(),
                        "t": point_time.get(),
                        "backend": current_backend.get(),
                    }
                    writer.write(json.dumps(message).encode() + b"\n")
                    await writer.drain()
                    await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            pass


def gate_configured() -> bool:
    """Whether this process reports its race points to a harness in another process."""
    return isinstance(_controller, RemoteGate)


def _from_environment() -> RaceController | None:
    address = os.environ.get(GATE_ENV)
    return RemoteGate(address) if address else None


_controller: RaceController | None = _from_environment()


def race_point(point: RacePoint, at: float | None = None) -> Awaitable[None]:
    """Await this at a named point. Free unless a controller is installed.

    `at` is when it happened (time.perf_counter()), if earlier than now (a COMMIT is reported
    after it returns, with the moment it was sent)."""
    controller = _controller
    if controller is None:
        return NOOP
    point_time.set(time.perf_counter() if at is None else at)
    return controller.reached(point, current_actor.get())


@contextmanager
def installed(controller: RaceController) -> Iterator[RaceController]:
    """Install `controller` for the duration of the block (one at a time)."""
    global _controller
    if _controller is not None:
        raise RuntimeError("a race controller is already installed")
    _controller = controller
    try:
        yield controller
    finally:
        _controller = None
