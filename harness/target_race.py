"""Target mode: race someone else's service over HTTP, forced by the barrier (harness/barrier.py).

A scenario's target script drives a `TargetRace`, the black-box sibling of runner.Race: it
makes payments the way the target file says (SQL or HTTP), builds signed checkout callbacks
and webhook deliveries, and launches them `together()` behind the barrier: all at once, or
`ordered` (each actor only once the one before it is held back, so PostgreSQL's lock queue
keeps that order at release). After the script, the target's invariants run with the run's
payment ids as $1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from racebench.harness.barrier import (
    HOLD_TIMEOUT_S,
    POLL_INTERVAL_S,
    Barrier,
    BarrierError,
    WaitLog,
)
from racebench.harness.database import connect, parse_url
from racebench.harness.gateway import Gateway, WebhookDelivery, hmac_sha256_hex, razorpay_id
from racebench.harness.invariants import CheckResult
from racebench.harness.runner import Answer, Request, RunOutcome, _brief
from racebench.harness.service_process import free_port, stop_process_group
from racebench.harness.target_file import (
    TargetSpec,
    UnknownValue,
    render_json,
    render_sql,
    render_text,
)
from racebench.harness.timeline import Timeline
from racebench.reference_service.events import RazorpayEvent

REQUEST_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
HEALTH_POLL_INTERVAL_S = 0.1
# Actors up to this many get a connection of their own (and, when racebench started the
# service, a worker process of their own while workers last); more share one pool.
OWN_CONNECTION_ACTORS = 8
SHARED_CONNECTIONS = 200
MAX_ROUTING_ATTEMPTS = 32

TargetScript = Callable[["TargetRace"], Awaitable[None]]
"""A scenario's script on a target: it drives one TargetRace."""


class TargetUnreachable(RuntimeError):
    """The service does not answer (its URL is in the message)."""


@dataclass(frozen=True)
class TargetPayment:
    """A payment made for a run: every value its template returned (payment_id, order_id, ...)."""

    values: dict[str, Any]
    amount: int

    @property
    def id(self) -> int:
        return int(self.values["payment_id"])

    @property
    def order_id(self) -> str:
        return str(self.values["order_id"])

    @property
    def invoice_id(self) -> Any:
        return self.values.get("invoice_id")


# -- the service ---------------------------------------------------------------------------


@dataclass
class RunningTarget:
    """A target whose service answers: its URL, and its process when racebench started it."""

    spec: TargetSpec
    base_url: str
    pid: int | None = None
    strategy: str | None = None


def _fill(text: str, values: dict[str, Any]) -> str:
    """`{port}`/`{strategy}` in a service field; other braces are left alone."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


@contextmanager
def running(spec: TargetSpec, strategy: str | None = None) -> Iterator[RunningTarget]:
    """The target's service: started from its command (and always stopped), or checked."""
    fill: dict[str, Any] = {"python": sys.executable}
    if strategy is not None:
        fill["strategy"] = strategy
    if "{port}" in spec.service.url:
        fill["port"] = free_port()
    base_url = _fill(spec.service.url, fill)
    if spec.service.command is None:
        wait_healthy(base_url + spec.service.health, None, 0.0)
        yield RunningTarget(spec, base_url, None, strategy)
        return
    env = {**os.environ, **{k: _fill(v, fill) for k, v in spec.service.env.items()}}
    command = shlex.split(_fill(spec.service.command, fill))
    log_path = _log_path(spec)
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                command,
                cwd=spec.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise TargetUnreachable(
                f"[service].command {command[0]!r} did not start: {error}"
            ) from None
        try:
            wait_healthy(base_url + spec.service.health, process, spec.service.start_timeout_s)
            yield RunningTarget(spec, base_url, process.pid, strategy)
        finally:
            stop_process_group(process)


def _log_path(spec: TargetSpec) -> Path:
    """The service's output: next to the target file, or in the temporary folder for a target
    shipped inside racebench (never into an installed package)."""
    name = f".racebench-{spec.name}.log"
    if spec.folder == Path(__file__).resolve().parent or not os.access(spec.folder, os.W_OK):
        return Path(tempfile.gettempdir()) / name
    return spec.folder / name


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise TargetUnreachable(
                    f"the service's command exited with {process.returncode} before {url} "
                    "answered (see .racebench-<name>.log next to the target file, or in the "
                    "temporary folder)"
                )
            try:
                response = client.get(url)
                if 200 <= response.status_code < 300:
                    return
                last = f"answered {response.status_code}"
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            if time.monotonic() >= deadline:
                raise TargetUnreachable(f"{url} is not reachable ({last})")
            time.sleep(HEALTH_POLL_INTERVAL_S)


def _worker_of(service_pid: int, local_port: int) -> int | None:
    """Which process of the service holds the server end of our connection."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(service_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                for conn in child.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == local_port:
                        return int(child.pid)
    return None


# -- one race ------------------------------------------------------------------------------


@dataclass
class Session:
    """What the runs of a target share: the service, the database, the barrier connection."""

    target: RunningTarget
    db: asyncpg.Connection
    barrier: Barrier
    use_barrier: bool = True
    run_prefix: str = field(default_factory=lambda: secrets.token_hex(3))
    counter: int = 0
    shared: httpx.AsyncClient | None = None
    own: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, target: RunningTarget, *, use_barrier: bool = True
    ) -> AsyncIterator[Session]:
        spec = target.spec
        async with AsyncExitStack() as stack:
            db = await connect(parse_url(spec.database_url))
            stack.push_async_callback(db.close)
            barrier = await stack.enter_async_context(
                Barrier.open(spec.database_url, spec.barrier_tables)
            )
            session = cls(target, db, barrier, use_barrier)
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

    async def route(self, actors: Sequence[str]) -> None:
        """Each of a few actors gets its own connection, on its own worker process when
        racebench started the service (found from its processes, not its code)."""
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
        return await asyncio.to_thread(_worker_of, self.target.pid, local_port)


class TargetRace:
    """The API a scenario's target script uses (the black-box sibling of runner.Race)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.spec = session.target.spec
        self.gateway = Gateway(
            key_secret=self.spec.key_secret, webhook_secret=self.spec.webhook_secret
        )
        self.timeline = Timeline()
        self.errors: list[str] = []
        self.payment_ids: list[int] = []
        self.held_back = 0
        self._launches = 0
        self._event_payments: dict[str, int] = {}

    # -- building blocks -------------------------------------------------------------------

    async def invoice(self, amount: int) -> Any:
        """A new invoice (the target's invoice_sql), for payments that share it."""
        template = self.spec.payment.invoice_sql
        if template is None:
            raise RuntimeError("the target has no [payment].invoice_sql")
        values = self._values(amount, None)
        row = await self.session.db.fetchrow(render_sql(template, values))
        if row is None or "invoice_id" not in row:
            raise RuntimeError("[payment].invoice_sql must return a column named invoice_id")
        return row["invoice_id"]

    async def payment(self, amount: int = 100_000, invoice_id: Any = None) -> TargetPayment:
        """A new payment to race on (on `invoice_id` when given)."""
        spec = self.spec.payment
        values = self._values(amount, invoice_id)
        if spec.sql is not None:
            row = await self.session.db.fetchrow(render_sql(spec.sql, values))
            if row is None:
                raise RuntimeError("[payment].sql returned no row")
            values.update(dict(row))
        else:
            assert spec.http is not None
            response = await self.session.client("setup").request(
                spec.http.method,
                render_text(spec.http.path, values),
                json=render_json(spec.http.json, values),
            )
            if not 200 <= response.status_code < 300:
                raise RuntimeError(
                    f"[payment.http] {spec.http.method} {spec.http.path} answered "
                    f"{response.status_code}: {response.text[:200]}"
                )
            body = response.json()
            for name, key in spec.returns.items():
                if key not in body:
                    raise RuntimeError(f"[payment.http].returns: the answer has no {key!r}")
                values[name] = body[key]
        for needed in ("payment_id", "order_id"):
            if needed not in values:
                raise RuntimeError(
                    f"[payment] must return {needed} (e.g. RETURNING id AS {needed})"
                )
        payment = TargetPayment(values, amount)
        self.payment_ids.append(payment.id)
        return payment

    def _values(self, amount: int, invoice_id: Any) -> dict[str, Any]:
        return {
            "run": self.session.run_prefix,
            "n": self.session.next_n(),
            "amount": amount,
            "invoice_id": invoice_id,
        }

    def _gateway_payment_id(self, payment: TargetPayment) -> str:
        return str(payment.values.setdefault("gateway_payment_id", razorpay_id("pay")))

    def verify(self, actor: str, payment: TargetPayment) -> Request:
        """The customer's checkout callback, signed with the target's key secret."""
        pay_id = self._gateway_payment_id(payment)
        signature = hmac_sha256_hex(self.spec.key_secret, f"{payment.order_id}|{pay_id}".encode())
        values = {**payment.values, "gateway_payment_id": pay_id, "signature": signature}
        call = self.spec.verify
        return Request(
            actor,
            call.method,
            render_text(call.path, values),
            json_body=render_json(call.json, values),
            words=f"{call.method} {call.path}",
            captures=payment.id,
        )

    def event(
        self, payment: TargetPayment, event_type: str = RazorpayEvent.PAYMENT_CAPTURED
    ) -> WebhookDelivery:
        delivery = self.gateway.event(
            event_type,
            order_id=payment.order_id,
            amount=payment.amount,
            payment_id=self._gateway_payment_id(payment),
        )
        self._event_payments[delivery.event_id] = payment.id
        return delivery

    def deliver(self, actor: str, delivery: WebhookDelivery) -> Request:
        return Request(
            actor,
            "POST",
            self.spec.webhook_path,
            content=delivery.body,
            headers=delivery.headers(),
            event_id=delivery.event_id,
            words=f"webhook {delivery.event_type}",
        )

    def webhook(
        self,
        actor: str,
        payment: TargetPayment,
        event_type: str = RazorpayEvent.PAYMENT_CAPTURED,
    ) -> Request:
        return self.deliver(actor, self.event(payment, event_type))

    def fail(self, message: str) -> None:
        self.errors.append(message)
        self.timeline.add("-", message, "error")

    # -- launches --------------------------------------------------------------------------

    async def then(self, request: Request) -> Answer:
        """One request on its own (no barrier: nothing to race)."""
        self._first_launch()
        return await self._send(request)

    async def together(
        self, *requests: Request, ordered: bool = False, quorum: int | None = None
    ) -> list[Answer]:
        """Send `requests` behind the barrier: all at once, or `ordered` (each once the one
        before is held back). The barrier lets go once every actor is held back or answered
        (or, with `quorum`, once that many are held back and no more arrive)."""
        self._first_launch()
        session = self.session
        actors = [r.actor for r in requests]
        await session.route(actors)
        if not session.use_barrier:
            self.timeline.note(f"no barrier: {len(requests)} request(s) sent at once")
            return list(await asyncio.gather(*(self._send(r) for r in requests)))
        barrier = session.barrier
        log = WaitLog(self.timeline, barrier.pid)
        await barrier.hold()
        self.timeline.add(
            "db", f"barrier: LOCK TABLE {', '.join(barrier.tables)} IN SHARE MODE", "note"
        )
        tasks: list[asyncio.Task[Answer]] = []
        try:
            if ordered:
                for request in requests:
                    tasks.append(asyncio.create_task(self._send(request)))
                    await self._wait_held(tasks, log, len(tasks), None)
            else:
                tasks = [asyncio.create_task(self._send(r)) for r in requests]
                await self._wait_held(tasks, log, len(tasks), quorum)
        finally:
            await barrier.release()
            log.released()
            self.timeline.add("db", "barrier released (ROLLBACK)", "release")
        try:
            answers = list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
        self.held_back += len(log.seen)
        if not log.seen:
            self.fail(
                "the barrier held nobody back: every request answered without writing to "
                f"{', '.join(barrier.tables)} (wrong barrier_tables?), so nothing was forced"
            )
        return answers

    async def _wait_held(
        self,
        tasks: Sequence[asyncio.Task[Answer]],
        log: WaitLog,
        wanted: int,
        quorum: int | None,
    ) -> None:
        """Until `wanted` actors are held back or answered (with `quorum`: that many held
        back and no more coming for a few polls), or HOLD_TIMEOUT_S."""
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        last, steady = -1, 0
        while True:
            held = await self.session.barrier.held_back()
            log.update(held)
            done = sum(1 for t in tasks if t.done())
            if len(held) + done >= wanted:
                return
            if quorum is not None and len(held) >= quorum:
                steady = steady + 1 if len(held) == last else 0
                if steady >= 5:
                    return
            last = len(held)
            if time.monotonic() >= deadline:
                self.timeline.note(
                    f"barrier: {len(held)} held back and {done} answered of {wanted} after "
                    f"{HOLD_TIMEOUT_S:.0f} s; letting go"
                )
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    def _first_launch(self) -> None:
        self._launches += 1
        if self._launches == 1:
            self.timeline.restart()

    async def _send(self, request: Request) -> Answer:
        self.timeline.add(request.actor, f"sends {request.words}", "send")
        try:
            response = await self.session.client(request.actor).request(
                request.method,
                request.path,
                json=request.json_body,
                content=request.content,
                headers=request.headers,
            )
        except httpx.HTTPError as error:
            self.fail(f"{request.actor} {request.words}: {type(error).__name__}: {error}")
            return Answer(request.actor, 0, str(error))
        try:
            body = response.json()
        except ValueError:
            body = response.text
        self.timeline.add(request.actor, f"answers {response.status_code} {_brief(body)}", "answer")
        if not request.accepts(response.status_code):
            self.fail(
                f"{request.actor}: {request.words} answered {response.status_code} "
                f"{str(body)[:160]}, expected {request.expectation()}"
            )
        return Answer(request.actor, response.status_code, body)

    # -- the check -------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        anomalies: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, int] = {}
        for inv in self.spec.invariants:
            try:
                rows = await self.session.db.fetch(inv.sql, self.payment_ids)
            except asyncpg.PostgresError as error:
                self.fail(f"invariant {inv.code}: the query failed: {error}")
                continue
            if rows:
                counts[inv.code] = len(rows)
                anomalies[inv.code] = [
                    {k: _plain(v) for k, v in dict(r).items()} for r in rows[:20]
                ]
        return CheckResult(not anomalies, list(anomalies), anomalies, counts)


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


async def run_target_once(script: TargetScript, session: Session) -> RunOutcome:
    """Run `script` on the target once, then its invariants on the run's payments."""
    race = TargetRace(session)
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await script(race)
    except TimeoutError:
        race.fail(f"the run did not finish within {RUN_TIMEOUT_S:.0f} s")
    except BarrierError:
        raise  # the barrier cannot be used at all: not one run's error
    except (UnknownValue, asyncpg.PostgresError, RuntimeError) as error:
        race.fail(f"{type(error).__name__}: {error}")
    finally:
        if session.barrier.holding:
            await session.barrier.release()
    check = await race.check()
    return RunOutcome(check, race.timeline.entries(), race.errors)


__all__ = [
    "RunningTarget",
    "Session",
    "TargetPayment",
    "TargetRace",
    "TargetScript",
    "TargetUnreachable",
    "run_target_once",
    "running",
]
