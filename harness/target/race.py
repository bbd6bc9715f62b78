"""One race on a target: a scenario's target script drives a `TargetRace`, the black-box sibling
of runner.Race.

It makes payments the way the target file says (SQL or HTTP), builds signed checkout callbacks
and webhook deliveries, and launches them `together()`: held at the barrier (harness/target/
barrier.py), all at once or `ordered` (each sent once the one before it is held), or on the
payment's row (racebench's own row lock: the first in line writes first). A launch proves it
forced the race, or says it did not: every actor must be held after a read before any actor
answers; otherwise the run is an error that names who answered early, when, and which tables
it wrote (so that barrier_tables can name them). A launch may inject a fault at the hold:
terminate the held backends, or keep the row lock until the service's own lock timeout fires.

The client ledger: every capture the service acknowledged (2xx) is checked against the
database after every launch, through the target's [payment].captured_sql; the target's
invariants run at the end, on the run's payments.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import httpx
import psutil

from racebench.harness.cells import RUN_TIMEOUT_S, RunOutcome, verdict_line
from racebench.harness.gateway import Gateway, WebhookDelivery, hmac_sha256_hex, razorpay_id
from racebench.harness.invariants import CheckResult, LedgerLog, Ledgers, check_invariants
from racebench.harness.requests import Answer, Request, Told, brief
from racebench.harness.target import writes
from racebench.harness.target.barrier import (
    HOLD_TIMEOUT_S,
    POLL_INTERVAL_S,
    BarrierError,
    HeldBack,
    WaitLog,
)
from racebench.harness.target.file import UnknownValue, render_json, render_sql, render_text
from racebench.harness.target.service import log_path_of
from racebench.harness.target.session import Session
from racebench.harness.timeline import Timeline
from racebench.razorpay import SETTLED_EVENTS, RazorpayEvent

# How long racebench keeps a held row lock waiting for the service's own lock timeout to fire
# ("outlast"); a service without one just waits, and is let go after this.
OUTLAST_MAX_S = 15.0
# With `quorum`, the held count must stop growing for this many polls before the release.
QUORUM_STEADY_POLLS = 5
# How the timeline names racebench's holders.
BARRIER = "the barrier"
ROW_LOCK = "racebench's row lock"

Fault = Literal["terminate", "outlast"]
TargetScript = Callable[["TargetRace"], Awaitable[None]]
"""A scenario's script on a target: it drives one TargetRace."""


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


@dataclass(frozen=True)
class Hold:
    """How a launch's wait for its actors ended: forced (every actor held after a read before
    any answered), or why not."""

    forced: bool
    held: list[HeldBack]
    why: str = ""


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
        self.told: list[Told] = []
        """The ledger: what each actor was told."""
        self.acknowledged: list[str] = []  # webhook event ids answered 2xx
        self.held_back = 0
        self._ledger = LedgerLog([inv for inv in self.spec.invariants if inv.ledger])
        self._ledger_checked = 0  # told lines already checked
        self._answered_at: dict[str, float] = {}
        self._early: Request | None = None  # who answered first (or was held before reading)
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

    async def payments_of_one_invoice(self, total: int, n: int) -> list[TargetPayment]:
        """`n` payments that share one invoice of `total` (each total / n): a new invoice
        ([payment].invoice_sql), or the one the first payment's template made."""
        each = total // n
        if self.spec.payment.invoice_sql is not None:
            first = await self.payment(each, invoice_id=await self.invoice(total))
        else:
            first = await self.payment(each)
        rest = [await self.payment(each, invoice_id=first.invoice_id) for _ in range(n - 1)]
        return [first, *rest]

    async def captured(self, payment: TargetPayment) -> bool | None:
        """Whether the payment is captured, by [payment].captured_sql (None: no such query)."""
        query = self.spec.payment.captured_sql
        if query is None:
            return None
        return bool(await self.session.db.fetch(query, [payment.id]))

    async def must_end_captured(self, payment: TargetPayment) -> None:
        """A scenario's own expectation: the payment is captured now (when the file says how
        to tell)."""
        if await self.captured(payment) is False:
            self.fail(f"payment {payment.id} should end captured, and is not")

    def _values(self, amount: int, invoice_id: Any) -> dict[str, Any]:
        return {
            "run": self.session.run_prefix,
            "n": self.session.next_n(),
            "amount": amount,
            "invoice_id": invoice_id,
        }

    def gateway_payment_id(self, payment: TargetPayment) -> str:
        """Razorpay's id of the payment (one per payment, made up on first use)."""
        return str(payment.values.setdefault("gateway_payment_id", razorpay_id("pay")))

    def verify(
        self, actor: str, payment: TargetPayment, *, expect: tuple[int, ...] = ()
    ) -> Request:
        """The customer's checkout callback, signed with the target's key secret."""
        pay_id = self.gateway_payment_id(payment)
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
            payment=payment.id,
            expect=expect,
        )

    def event(
        self,
        payment: TargetPayment,
        event_type: str = RazorpayEvent.PAYMENT_CAPTURED,
        event_id: str | None = None,
    ) -> WebhookDelivery:
        """A signed Razorpay event about `payment`."""
        delivery = self.gateway.event(
            event_type,
            order_id=payment.order_id,
            amount=payment.amount,
            payment_id=self.gateway_payment_id(payment),
            event_id=event_id,
        )
        self._event_payments[delivery.event_id] = payment.id
        return delivery

    def deliver(
        self, actor: str, delivery: WebhookDelivery, *, expect: tuple[int, ...] = ()
    ) -> Request:
        """One HTTP delivery of a prepared event (the same one twice: a redelivery)."""
        payment = self._event_payments.get(delivery.event_id)
        return Request(
            actor,
            "POST",
            self.spec.webhook_path,
            content=delivery.body,
            headers=delivery.headers(),
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            words=f"webhook {delivery.event_type}",
            captures=payment if delivery.event_type in SETTLED_EVENTS else None,
            payment=payment,
            expect=expect,
        )

    def webhook(
        self,
        actor: str,
        payment: TargetPayment,
        event_type: str = RazorpayEvent.PAYMENT_CAPTURED,
        *,
        expect: tuple[int, ...] = (),
    ) -> Request:
        return self.deliver(actor, self.event(payment, event_type), expect=expect)

    def fail(self, message: str) -> None:
        self.errors.append(message)
        self.timeline.add("-", message, "error")

    # -- launches --------------------------------------------------------------------------

    async def then(self, request: Request) -> Answer:
        """One request on its own (nothing to race), then the ledger."""
        self._first_launch()
        answer = await self._send(request)
        await self._check_ledger()
        return answer

    async def together(
        self,
        *requests: Request,
        ordered: bool = False,
        quorum: int | None = None,
        row: TargetPayment | None = None,
        fault: Fault | None = None,
    ) -> list[Answer]:
        """Send `requests`, held until every one has read (or, with `quorum`, that many, and no
        more arrive), then let them all go: held at the barrier tables, or (`row`) behind
        racebench's own lock on that payment's row. `ordered`: each is sent once the one
        before it is held (behind a row, the first in line writes first). `fault`: once all
        are held, "terminate" their backends, or "outlast" the service's own lock timeout
        (keep holding until each has answered)."""
        self._first_launch()
        self._answered_at.clear()
        session = self.session
        actors = [r.actor for r in requests]
        await session.route(actors)
        if session.launcher is not None:  # racebench explore: its scheduler interleaves them
            answers = await session.launcher.launch(self._send, requests)
            await self._check_ledger()
            return answers
        if not session.use_barrier:
            self.timeline.note(f"no barrier: {len(requests)} request(s) sent at once")
            answers = list(await asyncio.gather(*(self._send(r) for r in requests)))
            await self._check_ledger()
            return answers
        tasks: list[asyncio.Task[Answer]] = []
        unforced: str | None = None
        async with AsyncExitStack() as stack:
            holders = await self._hold(stack, row)
            log = WaitLog(self.timeline, holders)
            try:
                hold = await self._launch(requests, tasks, log, holders, ordered, quorum)
                if not hold.forced:
                    unforced = self._unforced(hold, requests, tasks)
                elif fault is not None:
                    await self._fault(fault, hold, tasks)
            finally:
                await self._release(stack, log)
            try:
                answers = list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()
        self.held_back += len(log.seen)
        await self._check_ledger()
        if unforced is not None:
            self.fail(await self._diagnosed(unforced, requests))
        return answers

    async def _hold(self, stack: AsyncExitStack, row: TargetPayment | None) -> dict[int, str]:
        """Take the barrier, or racebench's lock on `row`'s row; {pid: its name}."""
        session = self.session
        if row is None:
            await session.barrier.hold()
            stack.push_async_callback(session.barrier.release)
            tables = ", ".join(session.barrier.tables)
            self.timeline.add("db", f"barrier: LOCK TABLE {tables} IN SHARE MODE", "note")
            return {session.barrier.pid: BARRIER}
        holder = await stack.enter_async_context(session.hold_row(row.id))
        self.timeline.add("db", f"racebench locks payment {row.id}'s row (lock_sql)", "note")
        return {holder.pid: ROW_LOCK}

    async def _release(self, stack: AsyncExitStack, log: WaitLog) -> None:
        await stack.aclose()  # the barrier's ROLLBACK, or the row holder's
        log.released()
        self.timeline.add("db", "released (ROLLBACK): the held writes go", "release")

    async def _launch(
        self,
        requests: Sequence[Request],
        tasks: list[asyncio.Task[Answer]],
        log: WaitLog,
        holders: dict[int, str],
        ordered: bool,
        quorum: int | None,
    ) -> Hold:
        if not ordered:
            tasks.extend(asyncio.create_task(self._send(r)) for r in requests)
            return await self._wait_held(requests, tasks, log, holders, quorum)
        hold = Hold(True, [])
        for n in range(1, len(requests) + 1):
            tasks.append(asyncio.create_task(self._send(requests[n - 1])))
            if hold.forced:  # once one was not held, the rest go without waiting
                hold = await self._wait_held(requests[:n], tasks, log, holders, None)
        return hold

    async def _wait_held(
        self,
        requests: Sequence[Request],
        tasks: Sequence[asyncio.Task[Answer]],
        log: WaitLog,
        holders: dict[int, str],
        quorum: int | None,
    ) -> Hold:
        """Until every actor still in the race is held after a read (with `quorum`: that many,
        or all that are left, and the count has stopped growing), or one answers first, or
        HOLD_TIMEOUT_S. An actor stood aside (and is out of the race) when it answered 2xx
        saying it did nothing (the file's `acted` field): payment.authorized to a service that
        captures on payment.captured, or a duplicate delivery refused up front."""
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        last, steady = -1, 0
        while True:
            held = await self.session.barrier.held_back(holders)
            log.update(held)
            read = [h for h in held if h.proves]
            done = [(r, t.result()) for r, t in zip(requests, tasks, strict=True) if t.done()]
            if any(not self._stood_aside(r, answer) for r, answer in done):
                return Hold(False, read, "answered")
            racing = len(tasks) - len(done)
            stuck = [h for h in held if h.direct and not h.after_read]
            if stuck and quorum is None and len(held) >= racing:
                # Every actor is held, and one at racebench's lock before reading anything: it
                # waits there until the barrier lets go, never held after a read (the others
                # are given the time to answer first, which names the tables they write).
                who = f"{len(stuck)} of {racing} actors"
                if racing == 1:
                    self._early = next(
                        r for r, t in zip(requests, tasks, strict=True) if not t.done()
                    )
                    who = self._early.actor
                return Hold(
                    False,
                    read,
                    f"{who} waited at a barrier table before reading anything, where nothing "
                    "is decided (a table written before the capture reads?)",
                )
            wanted = min(quorum, racing) if quorum is not None else racing
            if len(read) >= wanted:
                if quorum is None:
                    return Hold(True, read)
                steady = steady + 1 if len(read) == last else 0
                if steady >= QUORUM_STEADY_POLLS:
                    return Hold(True, read)
            last = len(read)
            if time.monotonic() >= deadline:
                early = len(held) - len(read)
                why = (
                    f"after {HOLD_TIMEOUT_S:.0f} s, {len(read)} of {wanted} actors were held "
                    "after a read and none had answered"
                )
                if early:
                    why += (
                        f" ({early} waited at a barrier table before reading anything: a table "
                        "written before the capture reads?)"
                    )
                return Hold(False, read, why)
            await asyncio.sleep(POLL_INTERVAL_S)  # polling the server's lock state

    @staticmethod
    def _of(requests: Sequence[Request], actor: str) -> Request:
        return next(r for r in requests if r.actor == actor)

    def _stood_aside(self, request: Request, answer: Answer) -> bool:
        """Whether an answer says its request took no part in the race (2xx, and the answer's
        `acted` field says it did nothing)."""
        if not 200 <= answer.status < 300:
            return False
        call = self.spec.webhook if request.event_type is not None else self.spec.verify
        return call.says_it_acted(answer.body) is False

    def _unforced(
        self, hold: Hold, requests: Sequence[Request], tasks: Sequence[asyncio.Task[Answer]]
    ) -> str:
        """Why the launch forced nothing: who answered early, when, and before whom."""
        tables = ", ".join(self.session.barrier.tables)
        if hold.why != "answered":
            return f"the barrier forced nothing: {hold.why}; barrier_tables: {tables}"
        done = {r.actor: t.result() for r, t in zip(requests, tasks, strict=False) if t.done()}
        early = [
            a for a, answer in done.items() if not self._stood_aside(self._of(requests, a), answer)
        ]
        others = [r.actor for r in requests if r.actor not in done]
        first = min(early, key=lambda a: self._answered_at[a])  # the first to answer
        at = self._answered_at[first]
        if not others:
            before_whom = "never held after a read"
        elif not hold.held:
            before_whom = f"before {_names(others)} {'was' if len(others) == 1 else 'were'} held"
        else:
            before_whom = (
                f"while {len(hold.held)} of the other {len(requests) - 1} were held after a read"
            )
        self._early = next(r for r in requests if r.actor == first)
        return f"the barrier forced nothing: {first} answered at {at:.1f} ms, {before_whom}"

    async def _diagnosed(self, why: str, requests: Sequence[Request]) -> str:
        """`why`, and the tables the early actor writes: its request sent again alone, on a
        payment of its own, under the lock probe (once a session: the answer is the same)."""
        early = self._early
        if early is None:
            return why
        self._early = None
        kind = early.event_type or "verify"
        probed = self.session.probed.get(kind)
        if probed is None:
            again = await self._again(early)
            _, probed = await writes.probe(self.session.database.url, lambda: self._send(again))
            self.session.probed[kind] = probed
        named = ", ".join(self.session.barrier.tables)
        return (
            f"{why}. Alone, {early.words} writes {probed.describe()} (racebench's lock probe); "
            f"barrier_tables ({named}) should name the tables it writes after a read "
            "(`racebench target check` lists each request's)"
        )

    async def _again(self, request: Request) -> Request:
        """The same kind of request, on a fresh payment."""
        payment = await self.payment()
        if request.event_type is not None:
            return self.webhook(f"{request.actor} (alone)", payment, request.event_type)
        return self.verify(f"{request.actor} (alone)", payment)

    async def _fault(self, fault: Fault, hold: Hold, tasks: Sequence[asyncio.Task[Answer]]) -> None:
        """The launch's fault, at the moment every actor is held."""
        if fault == "terminate":
            for held in hold.held:
                killed = await self.session.terminate(held.pid)
                self.timeline.add(
                    "db",
                    f"racebench kills pid {held.pid} (pg_terminate_backend): "
                    f"{'gone' if killed else 'not gone'}",
                    "note",
                )
            return
        self.timeline.add(
            "db", "racebench keeps holding: the service's own lock timeout must fire", "note"
        )
        deadline = time.monotonic() + OUTLAST_MAX_S
        while not all(t.done() for t in tasks):
            if time.monotonic() >= deadline:
                self.timeline.note(
                    f"no answer after {OUTLAST_MAX_S:.0f} s (no lock timeout in the service?); "
                    "racebench lets go"
                )
                return
            await asyncio.sleep(POLL_INTERVAL_S)  # the actors' answers, polled with the lock

    def _service_exited(self) -> str:
        """Why no answer came, when it is that the service racebench started has exited (a
        crash the run provoked: a backend it terminated, say); else nothing."""
        pid = self.session.target.pid
        if pid is None or _alive(pid):
            return ""
        return (
            f" (the service's process {pid} has exited: its output is in {log_path_of(self.spec)})"
        )

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
            self._answered_at[request.actor] = self.timeline.now_ms()
            self.fail(
                f"{request.actor} {request.words}: {type(error).__name__}: {error}"
                f"{self._service_exited()}"
            )
            return Answer(request.actor, 0, str(error))
        self._answered_at[request.actor] = self.timeline.now_ms()
        try:
            body = response.json()
        except ValueError:
            body = response.text
        status = response.status_code
        self.timeline.add(request.actor, f"answers {status} {brief(body)}", "answer")
        outcome = str(body.get("status", "")) if isinstance(body, dict) else ""
        self.told.append(
            Told(request.actor, request.words, status, outcome, request.event_id, request.captures)
        )
        if request.event_id is not None and 200 <= status < 300:
            self.acknowledged.append(request.event_id)
        if not request.accepts(status):
            self.fail(
                f"{request.actor}: {request.words} answered {status} "
                f"{str(body)[:160]}, expected {request.expectation()}"
            )
        return Answer(request.actor, status, body)

    # -- the check -------------------------------------------------------------------------

    def _ledgers(self, told: Sequence[Told]) -> Ledgers:
        captures = [t.captures for t in told if t.captures is not None and 200 <= t.status < 300]
        events = [t.event_id for t in told if t.event_id is not None and 200 <= t.status < 300]
        return Ledgers(events, captures)

    async def _check_ledger(self) -> None:
        """The launch's acknowledgements against the database, now: a capture answered 2xx
        that a later request repairs is still a lie the client was told."""
        new, self._ledger_checked = self.told[self._ledger_checked :], len(self.told)
        try:
            await self._ledger.check(self.session.db, self._ledgers(new))
        except asyncpg.PostgresError as error:
            self.fail(f"the ledger's query failed: {error}")

    async def check(self) -> CheckResult:
        """The target's invariants on the run's payments, and the ledger after each launch."""
        try:
            result = await check_invariants(
                self.session.db,
                self.spec.invariants,
                payments=self.payment_ids,
                ledgers=self._ledgers(self.told),
            )
        except asyncpg.PostgresError as error:
            self.fail(f"an invariant's query failed: {error}")
            return CheckResult(True, [])
        return self._ledger.merge(result)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _names(actors: Sequence[str]) -> str:
    if len(actors) <= 3:
        return " and ".join(actors)
    return f"{', '.join(actors[:3])} and {len(actors) - 3} more"


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
    race.timeline.note(verdict_line(check, race.errors))
    return RunOutcome(check, race.timeline.entries(), race.errors)


__all__ = ["TargetPayment", "TargetRace", "TargetScript", "run_target_once"]
