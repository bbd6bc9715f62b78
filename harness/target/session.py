"""What the runs of one target share: its service, racebench's connection to its database, the
barrier, and the HTTP clients that carry each actor's requests.

Routing: up to OWN_CONNECTION_ACTORS actors get a connection of their own, and, when racebench
started the service, each on a worker process of its own while workers last (found from the
service's processes and the connection's port, not from its code): an in-process lock of the
service then cannot serialise two actors where the database would not see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import httpx
import psutil

from racebench.harness.database import connect, parse_url
from racebench.harness.requests import Answer, Request
from racebench.harness.target.barrier import Barrier, RowHolder
from racebench.harness.target.service import RunningTarget, TargetDatabase
from racebench.harness.target.writes import Probe

# A request of a scenario answers in milliseconds; one held at the barrier or behind a held
# row waits for the harness (HOLD_TIMEOUT_S), or for the service's own lock timeout.
REQUEST_TIMEOUT_S = 30.0
# Actors up to this many get a connection of their own (and, when racebench started the
# service, a worker process of their own while workers last); more share one pool.
OWN_CONNECTION_ACTORS = 8
# The shared pool: one connection per actor of the largest launch (hundred_way), twice over.
SHARED_CONNECTIONS = 200
# Connections opened to land one actor on each worker (the kernel picks the worker).
MAX_ROUTING_ATTEMPTS = 32
# racebench's own statements on the target's database (payments, invariants, kills) take
# milliseconds; one that waits this long is stuck behind a lock and must fail the run.
STATEMENT_TIMEOUT_MS = 10_000
# How long a kill waits for the terminated backend to be gone (milliseconds, in practice).
TERMINATE_WAIT_MS = 5_000


class Launcher(Protocol):
    """Sends a launch's requests in place of the barrier (racebench explore's scheduler):
    `send` sends one request and records its answer; the answers come back in order."""

    async def launch(
        self, send: Callable[[Request], Awaitable[Answer]], requests: Sequence[Request]
    ) -> list[Answer]: ...


@dataclass
class Session:
    """A target's service, its database (racebench's own connection), the barrier, clients."""

    target: RunningTarget
    db: asyncpg.Connection
    barrier: Barrier
    database: TargetDatabase
    use_barrier: bool = True
    run_prefix: str = field(default_factory=lambda: secrets.token_hex(3))
    counter: int = 0
    shared: httpx.AsyncClient | None = None
    own: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    # What each kind of request writes alone (the lock probe), once asked: "verify", or the
    # webhook's event type.
    probed: dict[str, Probe] = field(default_factory=dict)
    # Set by racebench explore: its scheduler launches the races instead of the barrier.
    launcher: Launcher | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        target: RunningTarget,
        *,
        use_barrier: bool = True,
        database: TargetDatabase | None = None,
    ) -> AsyncIterator[Session]:
        spec = target.spec
        database = database or TargetDatabase(target.database_url)
        async with AsyncExitStack() as stack:
            db = await connect(parse_url(database.url))
            stack.push_async_callback(db.close)
            await db.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            barrier = await stack.enter_async_context(
                Barrier.open(database.url, spec.barrier_tables)
            )
            session = cls(target, db, barrier, database, use_barrier)
            session.shared = httpx.AsyncClient(
                base_url=target.base_url,
                timeout=REQUEST_TIMEOUT_S,
                limits=httpx.Limits(
                    max_connections=SHARED_CONNECTIONS,
                    max_keepalive_connections=SHARED_CONNECTIONS,
                ),
            )
            stack.push_async_callback(session.aclose)
            yield session

    async def aclose(self) -> None:
        for client in (self.shared, *self.own.values()):
            if client is not None:
                await client.aclose()

    def next_n(self) -> int:
        self.counter += 1
        return self.counter

    def client(self, actor: str) -> httpx.AsyncClient:
        assert self.shared is not None
        return self.own.get(actor, self.shared)

    # -- the faults --------------------------------------------------------------------------

    async def terminate(self, pid: int) -> bool:
        """pg_terminate_backend(pid), waiting (bounded) until the backend is gone."""
        killed: bool = await self.db.fetchval(
            "SELECT pg_terminate_backend($1, $2)", pid, TERMINATE_WAIT_MS
        )
        return killed

    def hold_row(self, payment_id: int) -> contextlib.AbstractAsyncContextManager[RowHolder]:
        """racebench's own lock on the payment's row ([payment].lock_sql)."""
        lock_sql = self.target.spec.payment.lock_sql
        if lock_sql is None:
            raise ValueError("the target file has no [payment].lock_sql")
        return RowHolder.hold(self.database.url, lock_sql, payment_id)

    # -- routing -----------------------------------------------------------------------------

    async def route(self, actors: Sequence[str]) -> None:
        """Each of a few actors gets its own connection, on its own worker process when
        racebench started the service."""
        if len(actors) > OWN_CONNECTION_ACTORS:
            return
        taken: set[int] = set()
        workers = self._workers()
        for actor in actors:
            client = self.own.get(actor)
            if client is None:
                client = self.own[actor] = self._single()
            if workers < 2 or len(taken) >= workers:
                continue
            spare: list[httpx.AsyncClient] = []
            for _ in range(MAX_ROUTING_ATTEMPTS):
                pid = await self._pid_of(client)
                if pid is None or pid not in taken:
                    if pid is not None:
                        taken.add(pid)
                    break
                spare.append(client)
                client = self.own[actor] = self._single()
            for extra in spare:
                await extra.aclose()

    def _workers(self) -> int:
        if self.target.pid is None:
            return 0
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.target.pid).children(recursive=True)
            return sum(1 for c in children if c.net_connections(kind="tcp"))
        return 0

    def _single(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.target.base_url,
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def _pid_of(self, client: httpx.AsyncClient) -> int | None:
        assert self.target.pid is not None
        response = await client.get(self.target.spec.service.health)
        stream = response.extensions.get("network_stream")
        if stream is None:
            return None
        local_port = stream.get_extra_info("client_addr")[1]
        return await asyncio.to_thread(worker_of, self.target.pid, local_port)


def worker_of(service_pid: int, local_port: int) -> int | None:
    """Which process of the service holds the server end of our connection."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(service_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                for conn in child.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == local_port:
                        return int(child.pid)
    return None
