"""Where a race's requests go, and how its race points are controlled.

- `InProcessTarget`: the FastAPI app through httpx.ASGITransport, in the harness's event loop.
  Race points are controlled directly (the actor tag travels in the task's context), and an
  actor stuck in an asyncio.Lock (app_lock) is seen in its task's chain of awaits.
- `HttpTarget`: `racebench serve --workers N` in a child process. Its workers call back to a
  small gate server in the harness at every race point (RACEBENCH_RACE_GATE), and each actor
  gets its own connection, routed to a different worker, so the worker's pid names the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import psutil

from racebench.harness.service_process import running_service
from racebench.reference_service import race_points
from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings
from racebench.reference_service.service import Service
from racebench.reference_service.strategies import LockStrategy
from racebench.results import Mode

if TYPE_CHECKING:
    from racebench.harness.controller import ScheduleController

# One request of a scenario: milliseconds normally; a schedule can hold one for up to its stall
# timeout (10 s), and the service's lock_timeout is 5 s. Past this, the run is an error.
REQUEST_TIMEOUT_S = 30.0
# Worker processes of the service in http mode: two are enough to split app_lock's locks.
HTTP_WORKERS = 2
# Service processes that serve a run's requests, by mode (in process: the harness's own).
PROCESSES: dict[Mode, int] = {"in_process": 1, "http": HTTP_WORKERS}


def processes_of(mode: Mode) -> int:
    """How many service processes serve a run's requests in `mode`."""
    return PROCESSES[mode]


# An idle connection of the harness's clients is dropped after this: below the service's own
# keep-alive (5 s, racebench serve), or a request may go out on a connection the server is
# closing at that moment (httpx.ReadError, seen in hundred_way over HTTP).
CLIENT_KEEPALIVE_S = 2.0
# A worker sends its one JSON line right after connecting; a silent connection is not ours.
GATE_READ_TIMEOUT_S = 5.0
# Connections opened to land one actor on each worker (the kernel picks the worker).
MAX_ROUTING_ATTEMPTS = 64
# Up to this many actors in one launch, each gets a connection of its own, spread evenly over
# the workers (see HttpTarget.prepare); more share the setup client's pool.
SPREAD_ACTORS_MAX = 16
# Connections per service pool (in-process app, or each http worker). PostgreSQL allows 100
# here, shared with every other test and job on the machine; 100-way contention on one row
# gains nothing from more than a few connections, the rest queue in the pool either way.
HARNESS_POOL_SIZE = 8
# Connections of the shared client that sends setup requests and, when actors outnumber the
# workers (hundred_way's 100 verifies), every actor's request: one per actor, so that a launch
# is not serialised in the client; twice the largest launch, for headroom.
SHARED_CLIENT_CONNECTIONS = 200


class Target(Protocol):
    """Where a run's requests go, and how its race points are controlled."""

    mode: Mode

    def client(self, actor: str) -> httpx.AsyncClient: ...
    async def prepare(self, actors: Sequence[str]) -> None: ...
    def installed(
        self, controller: ScheduleController
    ) -> contextlib.AbstractContextManager[Any]: ...
    def lock_waiting_task(self, actor: str) -> bool: ...
    def anonymous(self, actors: Sequence[str]) -> bool: ...
    def register_task(self, actor: str, task: asyncio.Task[Any]) -> None: ...


class InProcessTarget:
    """The app in this event loop, through httpx.ASGITransport."""

    mode: Mode = "in_process"

    def __init__(self, service: Service, client: httpx.AsyncClient) -> None:
        self.service = service
        self._client = client
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        database_url: str,
        strategy: str | LockStrategy,
        *,
        lock_timeout_ms: int | None = None,
    ) -> AsyncIterator[InProcessTarget]:
        """The app under `strategy` (a name, or an instance such as a test's broken one), with
        the service's lock timeout unless `lock_timeout_ms` is given."""
        name = strategy if isinstance(strategy, str) else "for_update"
        instance = None if isinstance(strategy, str) else strategy
        settings = Settings(
            database_url=database_url, lock_strategy=name, pool_size=HARNESS_POOL_SIZE
        )
        if lock_timeout_ms is not None:
            settings = settings.model_copy(update={"lock_timeout_ms": lock_timeout_ms})
        app = create_app(settings, instance)
        service: Service = app.state.service
        await service.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://racebench.test", timeout=REQUEST_TIMEOUT_S
        ) as client:
            try:
                yield cls(service, client)
            finally:
                await service.stop()

    def client(self, actor: str) -> httpx.AsyncClient:
        return self._client

    async def prepare(self, actors: Sequence[str]) -> None:
        self._tasks.clear()

    @contextmanager
    def installed(self, controller: ScheduleController) -> Iterator[None]:
        with race_points.installed(controller):
            yield

    def register_task(self, actor: str, task: asyncio.Task[Any]) -> None:
        self._tasks[actor] = task

    def anonymous(self, actors: Sequence[str]) -> bool:
        return False  # the actor tag travels in the task's context

    def lock_waiting_task(self, actor: str) -> bool:
        """Is the actor's task (any actor's, for "") suspended in asyncio.Lock.acquire?"""
        tasks = self._tasks.values() if actor == "" else [self._tasks.get(actor)]
        return any(t is not None and _awaits_asyncio_lock(t) for t in tasks)


_LOCK_ACQUIRE = asyncio.Lock.acquire.__code__


def _awaits_asyncio_lock(task: asyncio.Task[Any]) -> bool:
    """Follow the task's chain of awaited coroutines down to the innermost one."""
    if task.done():
        return False
    coro: Any = task.get_coro()
    while True:
        inner = getattr(coro, "cr_await", None)
        if inner is None or not hasattr(inner, "cr_code"):
            return getattr(coro, "cr_code", None) is _LOCK_ACQUIRE and inner is not None
        coro = inner


class RaceGate:
    """The harness end of RACEBENCH_RACE_GATE: service workers report race points here."""

    def __init__(self) -> None:
        self.controller: ScheduleController | None = None
        self.actor_by_worker: dict[int, str] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(GATE_READ_TIMEOUT_S):
                message = json.loads(await reader.readline())
            controller = self.controller
            if controller is not None:
                actor = self._actor_of(message, controller)
                # When it happened and on which backend, as the worker saw it (this handler
                # is its own task: the context is this report's alone).
                race_points.point_time.set(_float_or_none(message.get("t")))
                race_points.current_backend.set(_int_or_none(message.get("backend")))
                await controller.reached(message["point"], actor or f"worker {message['pid']}")
            writer.write(b"go\n")
            await writer.drain()
        except (OSError, ValueError, KeyError, TimeoutError):
            pass  # the worker goes on by itself when the gate drops
        finally:
            writer.close()

    def _actor_of(self, message: dict[str, Any], controller: ScheduleController) -> str | None:
        """Who reported: the actor its request was tagged with (X-Racebench-Actor), when each
        actor has a worker of its own. A report from a worker other than its actor's means the
        request was not routed where prepare() put it: the timeline says so."""
        worker = self.actor_by_worker.get(message["pid"])
        if not self.actor_by_worker:
            return worker  # anonymous: more actors than workers
        tagged = message.get("actor")
        if not isinstance(tagged, str):
            return worker
        if worker != tagged and tagged in self.actor_by_worker.values():
            controller.routing_failed(
                f"{tagged}'s request was served by worker {message['pid']}, "
                f"not by the worker of its own ({worker or 'no actor'}'s)"
            )
        return tagged


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


class HttpTarget:
    """`racebench serve --workers N` in a child process, with a race gate."""

    mode: Mode = "http"

    def __init__(self, base_url: str, service_pid: int, gate: RaceGate, workers: int) -> None:
        self.base_url = base_url
        self.service_pid = service_pid
        self.gate = gate
        self.workers = workers
        self._setup = self._new_client(max_connections=SHARED_CLIENT_CONNECTIONS)
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._port = int(base_url.rsplit(":", 1)[1])

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        database_url: str,
        strategy: str,
        workers: int = HTTP_WORKERS,
        *,
        lock_timeout_ms: int | None = None,
    ) -> AsyncIterator[HttpTarget]:
        """`racebench serve` under `strategy`, with the service's lock timeout unless
        `lock_timeout_ms` is given."""
        gate = RaceGate()
        await gate.start()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(gate.stop)
            env = {
                race_points.GATE_ENV: f"127.0.0.1:{gate.port}",
                "RACEBENCH_DB_POOL_SIZE": str(HARNESS_POOL_SIZE),
            }
            if lock_timeout_ms is not None:
                env["RACEBENCH_LOCK_TIMEOUT_MS"] = str(lock_timeout_ms)
            service_cm = running_service(
                strategy=strategy, database_url=database_url, workers=workers, extra_env=env
            )
            service = await asyncio.to_thread(service_cm.__enter__)
            stack.push_async_callback(asyncio.to_thread, service_cm.__exit__, None, None, None)
            target = cls(service.base_url, service.pid, gate, workers)
            stack.push_async_callback(target.aclose)
            yield target

    def _new_client(self, max_connections: int = 1) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=CLIENT_KEEPALIVE_S,
            ),
        )

    async def aclose(self) -> None:
        for client in (self._setup, *self._clients.values()):
            await client.aclose()

    def client(self, actor: str) -> httpx.AsyncClient:
        return self._clients.get(actor, self._setup)

    async def _worker_of(self, client: httpx.AsyncClient) -> int | None:
        """Which worker process serves the client's (kept-alive) connection."""
        response = await client.get("/healthz")
        stream = response.extensions.get("network_stream")
        if stream is None:
            return None
        local_port = stream.get_extra_info("client_addr")[1]
        return await asyncio.to_thread(self._find_worker, local_port)

    def _find_worker(self, local_port: int) -> int | None:
        for child in psutil.Process(self.service_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                for conn in child.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == local_port:
                        return child.pid
        return None

    async def prepare(self, actors: Sequence[str]) -> None:
        """Give each actor its own connection on its own worker, while workers last. A few
        more actors than workers (invoice_fan_in's eight) are spread evenly over the workers,
        unnamed: left to the shared pool, the kernel may hand every connection to one worker,
        and app_lock's waiters then queue where the harness cannot see them. Past
        SPREAD_ACTORS_MAX (hundred_way) they share the pool."""
        self.gate.actor_by_worker = {}
        named = len(actors) <= self.workers
        if not named and len(actors) > SPREAD_ACTORS_MAX:
            return  # many actors: they share the pool; race points are anonymous
        spare: list[httpx.AsyncClient] = []
        taken: Counter[int] = Counter()
        try:
            for i, actor in enumerate(actors):
                client = self._clients.get(actor) or self._new_client()
                self._clients[actor] = client
                for _ in range(MAX_ROUTING_ATTEMPTS):
                    pid = await self._worker_of(client)
                    # named: a worker of its own; spread: no worker ahead of the others
                    if pid is not None and taken[pid] <= (0 if named else i // self.workers):
                        if named:
                            self.gate.actor_by_worker[pid] = actor
                        taken[pid] += 1
                        break
                    # Keep the connection open, so that the next one lands elsewhere.
                    spare.append(client)
                    client = self._clients[actor] = self._new_client()
                else:
                    raise RuntimeError(f"could not route {actor} to a worker of its own")
        finally:
            for client in spare:
                await client.aclose()

    @contextmanager
    def installed(self, controller: ScheduleController) -> Iterator[None]:
        self.gate.controller = controller
        try:
            yield
        finally:
            self.gate.controller = None

    def register_task(self, actor: str, task: asyncio.Task[Any]) -> None:
        pass

    def anonymous(self, actors: Sequence[str]) -> bool:
        return len(actors) > self.workers  # only one actor per worker can be named

    def lock_waiting_task(self, actor: str) -> bool:
        return False  # another process's asyncio.Lock cannot be seen from here
