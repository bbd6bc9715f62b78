"""Runs one scenario against one target: barrier-synchronised launches, schedules, a verdict.

A scenario script drives a `Race`: it creates payments, builds requests (a checkout callback,
a webhook delivery) tagged with their actor, and launches them `together()` behind a barrier,
optionally under a schedule. The `Race` records the timeline, the webhook deliveries answered
2xx (for WEBHOOK_LOST), and the errors; `run_once()` cleans the tables first and checks the
invariants after.

The targets (in-process app, or `racebench serve` over HTTP) are in harness/white_box.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from racebench.harness.cells import RUN_TIMEOUT_S, RunOutcome, verdict_line
from racebench.harness.controller import Jitter, ScheduleController
from racebench.harness.database import EmbeddedPostgres
from racebench.harness.faults import DatabaseFaults
from racebench.harness.gateway import Gateway, WebhookDelivery
from racebench.harness.invariants import INVARIANTS, CheckResult, LedgerLog, Ledgers
from racebench.harness.locks import LockProbe, LockSampler, Monitor
from racebench.harness.requests import Answer, Request, Told, brief
from racebench.harness.schedule import Schedule
from racebench.harness.timeline import Timeline
from racebench.harness.white_box import Target
from racebench.razorpay import SETTLED_EVENTS, RazorpayEvent
from racebench.reference_service import race_points

# One launch (one `together()`): each schedule step is bounded by STALL_TIMEOUT_S (10 s) and
# each request by REQUEST_TIMEOUT_S (30 s); past this, the launch is an error.
LAUNCH_TIMEOUT_S = 60.0

Script = Callable[["Race"], Awaitable[None]]
"""A scenario's script: it drives one Race."""


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    invoice_id: int
    order_id: str
    amount: int
    currency: str = "INR"


class Race:
    """The API a scenario script uses: payments, requests with actor tags, launches."""

    def __init__(
        self,
        target: Target,
        monitor: Monitor,
        gateway: Gateway,
        *,
        use_schedules: bool = True,
        jitter_seed: str | None = None,
        server: EmbeddedPostgres | None = None,
    ) -> None:
        self.target = target
        self.monitor = monitor
        self.gateway = gateway
        self.faults = DatabaseFaults(monitor, monitor.database_url, server)
        """The schedules' faults; a restart_database step needs `server` (one this run owns)."""
        self.use_schedules = use_schedules
        self.jitter_seed = jitter_seed
        self.timeline = Timeline()
        self.acknowledged: list[str] = []
        self.told: list[Told] = []
        """The ledger: what each actor was told, checked against the database
        (ACKNOWLEDGED_LOST)."""
        self._event_payments: dict[str, int] = {}
        self.errors: list[str] = []
        self._launches = 0
        self._ledger = LedgerLog([inv for inv in INVARIANTS if inv.ledger])
        self._ledger_checked = 0  # told lines already checked

    # -- building blocks -------------------------------------------------------------------

    async def payments_of_one_invoice(self, total: int, count: int) -> list[Payment]:
        """`count` pending payments that split one invoice of `total` evenly: the invoice is
        partially paid until the last of them is captured."""
        invoice_id = await self.monitor.new_invoice(total)
        return [await self.payment(total // count, invoice_id=invoice_id) for _ in range(count)]

    async def payment(self, amount: int = 100_000, invoice_id: int | None = None) -> Payment:
        """A new pending payment (on a new invoice, or on `invoice_id`)."""
        body: dict[str, Any] = {"amount": amount, "currency": "INR"}
        if invoice_id is not None:
            body["invoice_id"] = invoice_id
        response = await self.target.client("setup").post("/payments", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /payments answered {response.status_code}: {response.text}")
        data = response.json()
        return Payment(data["id"], data["invoice_id"], data["razorpay_order_id"], amount)

    def verify(self, actor: str, payment: Payment, *, expect: tuple[int, ...] = ()) -> Request:
        """The customer's checkout callback for `payment` (POST /payments/verify); it must
        answer 2xx, or one of `expect`."""
        checkout = self.gateway.checkout(
            payment.id, payment.order_id, payment_id=f"pay_{payment.order_id[6:]}"
        )
        return Request(
            actor,
            "POST",
            "/payments/verify",
            json_body=checkout.body(),
            words="POST /verify",
            expect=expect,
            captures=payment.id,
            payment=payment.id,
        )

    def event(
        self,
        payment: Payment,
        event_type: str = RazorpayEvent.PAYMENT_CAPTURED,
        event_id: str | None = None,
    ) -> WebhookDelivery:
        """A signed Razorpay event about `payment`."""
        delivery = self.gateway.event(
            event_type,
            order_id=payment.order_id,
            amount=payment.amount,
            currency=payment.currency,
            payment_id=f"pay_{payment.order_id[6:]}",
            event_id=event_id,
        )
        self._event_payments[delivery.event_id] = payment.id
        return delivery

    def webhook(
        self,
        actor: str,
        payment: Payment,
        event_type: str = RazorpayEvent.PAYMENT_CAPTURED,
        *,
        expect: tuple[int, ...] = (),
    ) -> Request:
        """Razorpay's webhook delivery of `event_type` for `payment`; it must answer 2xx, or
        one of `expect`."""
        return self.deliver(actor, self.event(payment, event_type), expect=expect)

    def deliver(
        self, actor: str, delivery: WebhookDelivery, *, expect: tuple[int, ...] = ()
    ) -> Request:
        """One HTTP delivery of a prepared event (deliver the same one twice: a duplicate);
        it must answer 2xx, or one of `expect` (a forged delivery: `expect=(400,)`)."""
        return Request(
            actor,
            "POST",
            "/webhooks/razorpay",
            content=delivery.body,
            headers=delivery.headers(),
            event_id=delivery.event_id,
            words=f"webhook {delivery.event_type}",
            expect=expect,
            captures=(
                self._event_payments.get(delivery.event_id)
                if delivery.event_type in SETTLED_EVENTS
                else None
            ),
            payment=self._event_payments.get(delivery.event_id),
        )

    async def status_of(self, payment: Payment) -> str:
        """The payment's status now (GET /payments/{id})."""
        response = await self.target.client("setup").get(f"/payments/{payment.id}")
        if response.status_code != 200:
            raise RuntimeError(f"GET /payments/{payment.id} answered {response.status_code}")
        status: str = response.json()["status"]
        return status

    async def check(self) -> CheckResult:
        """Every invariant, on what this race has left in the database so far, and the ledger
        as it stood after each launch."""
        captured = [t.acknowledged_capture for t in self.told]
        result = await self.monitor.check(
            self.acknowledged, [payment for payment in captured if payment is not None]
        )
        return self._ledger.merge(result)

    async def _check_ledger(self) -> None:
        """The launch's acknowledgements against the database, now (a redelivery that repairs
        a capture acknowledged but rolled back does not unsay what the client was told)."""
        new, self._ledger_checked = self.told[self._ledger_checked :], len(self.told)
        events = [t.event_id for t in new if t.event_id is not None and 200 <= t.status < 300]
        captures = [t.acknowledged_capture for t in new if t.acknowledged_capture is not None]
        await self.monitor.check_ledger(self._ledger, Ledgers(events, captures))

    def fail(self, message: str) -> None:
        """A scenario's own expectation did not hold (an error, not a race)."""
        self.errors.append(message)
        self.timeline.add("-", message, "error")

    # -- launches --------------------------------------------------------------------------

    async def then(self, request: Request) -> Answer:
        """Send one request and wait for its answer (no concurrency)."""
        return (await self.together(request))[0]

    async def together(self, *requests: Request, schedule: Schedule | None = None) -> list[Answer]:
        """Send `requests` at the same instant (a barrier), under `schedule` if given."""
        self._launches += 1
        actors = [r.actor for r in requests]
        if len(set(actors)) != len(actors):
            raise ValueError(f"actor names must be unique in one launch: {actors}")
        await self.target.prepare(actors)
        if self._launches == 1:
            self.timeline.restart()  # time 0 is the first launch, not the setup before it
        sampler = LockSampler(self.monitor, self.timeline)
        jitter = (
            Jitter(f"{self.jitter_seed}|{self._launches}") if self.jitter_seed is not None else None
        )
        controller = ScheduleController(
            actors,
            schedule if self.use_schedules else None,
            self.timeline,
            LockProbe(self.target, sampler),
            jitter,
            hold_strangers=self.target.anonymous(actors),
            faults=self.faults,
            payments={r.actor: r.payment for r in requests if r.payment is not None},
        )
        sampler.in_flight = controller.in_flight
        sampler.controller = controller
        barrier = asyncio.Barrier(len(requests) + 1)
        stop = asyncio.Event()

        async def drive() -> None:
            await barrier.wait()
            await controller.drive()

        with self.target.installed(controller):
            sampling = asyncio.create_task(sampler.run(stop))
            driving = asyncio.create_task(drive())
            acting = [asyncio.create_task(self._act(r, controller, barrier)) for r in requests]
            try:
                async with asyncio.timeout(LAUNCH_TIMEOUT_S):
                    answers = await asyncio.gather(*acting)
                    await driving
            except TimeoutError:
                raise TimeoutError(
                    f"the launch of {', '.join(actors[:4])}{'...' if len(actors) > 4 else ''} "
                    f"did not finish within {LAUNCH_TIMEOUT_S:.0f} s"
                ) from None
            finally:
                for task in (*acting, driving):
                    task.cancel()
                stop.set()
                await asyncio.gather(sampling, driving, *acting, return_exceptions=True)
                sampler.finish()
        if controller.broken:
            name = schedule.name if schedule is not None else "schedule"
            self.errors.append(f"the schedule {name!r} did not happen: {controller.broken}")
        await self._check_ledger()
        return answers

    async def _act(
        self, request: Request, controller: ScheduleController, barrier: asyncio.Barrier
    ) -> Answer:
        # This task's context is its own: the actor tag reaches the service's race points.
        race_points.current_actor.set(request.actor)
        task = asyncio.current_task()
        assert task is not None
        self.target.register_task(request.actor, task)
        await barrier.wait()
        await controller.may_start(request.actor)
        self.timeline.add(request.actor, f"sends {request.words}", "send")
        try:
            response = await self.target.client(request.actor).request(
                request.method,
                request.path,
                json=request.json_body,
                content=request.content,
                headers={**request.headers, race_points.ACTOR_HEADER: request.actor},
            )
        except httpx.HTTPError as error:
            controller.finished(request.actor, succeeded=False, answer=type(error).__name__)
            self.fail(f"{request.actor} {request.words}: {type(error).__name__}: {error}")
            return Answer(request.actor, 0, str(error))
        except BaseException:  # cancelled: the schedule must not wait for this actor
            controller.finished(request.actor, succeeded=False, answer="cancelled")
            raise
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = response.text
        answer = f"{status} {brief(body)}"
        succeeded = 200 <= status < 300
        self.timeline.add(request.actor, f"answers {answer}", "answer")
        controller.finished(request.actor, succeeded=succeeded, answer=answer)
        if request.event_id is not None and succeeded:
            self.acknowledged.append(request.event_id)
        outcome = str(body.get("status", "")) if isinstance(body, dict) else ""
        self.told.append(
            Told(request.actor, request.words, status, outcome, request.event_id, request.captures)
        )
        if status == 503 and "retry-after" not in response.headers:
            self.fail(f"{request.actor}: {request.words} answered 503 without Retry-After")
        if not request.accepts(status):
            self.fail(
                f"{request.actor}: {request.words} answered {status} {brief(body)}, "
                f"expected {request.expectation()}"
            )
        return Answer(request.actor, status, body)


# -- one run -------------------------------------------------------------------------------


async def run_once(
    script: Script,
    target: Target,
    monitor: Monitor,
    *,
    gateway: Gateway | None = None,
    use_schedules: bool = True,
    jitter_seed: str | None = None,
    server: EmbeddedPostgres | None = None,
) -> RunOutcome:
    """Clean the tables, run `script(race)` (bounded by RUN_TIMEOUT_S), check every invariant.
    `server`: the database server, if this run owns it (restart_database steps need it)."""
    race = await new_race(
        target,
        monitor,
        gateway=gateway,
        use_schedules=use_schedules,
        jitter_seed=jitter_seed,
        server=server,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await script(race)
    except TimeoutError as error:
        race.fail(str(error) or f"the run did not finish within {RUN_TIMEOUT_S:.0f} s")
    except Exception as error:  # a broken run is reported as an error, never hidden
        race.fail(f"{type(error).__name__}: {error}")
    check = await race.check()
    race.timeline.note(verdict_line(check, race.errors))
    return RunOutcome(check, race.timeline.entries(), race.errors)


async def new_race(
    target: Target,
    monitor: Monitor,
    *,
    gateway: Gateway | None = None,
    use_schedules: bool = True,
    jitter_seed: str | None = None,
    server: EmbeddedPostgres | None = None,
) -> Race:
    """A Race on clean tables: what each run (and each plugin test) starts from."""
    await monitor.clean()
    return Race(
        target,
        monitor,
        gateway or Gateway(),
        use_schedules=use_schedules,
        jitter_seed=jitter_seed,
        server=server,
    )
