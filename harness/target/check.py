"""`racebench target check FILE`: real payments, one verify, one webhook, one forced race, in
plain words.

Each step says what it found. The first that cannot go on stops the check (an unreachable URL,
a database that does not answer, a barrier table missing or not lockable, a query that does
not parse, a signature the service rejects: its answer is shown). Then:
- each capture path alone, on a payment of its own: its answer (and, where the file names it,
  whether the answer says it acted), the tables it writes, in which transaction, after a read
  or before (the lock probe, harness/target/writes.py), whether the payment is captured
  ([payment].captured_sql);
- barrier_tables against the tables both paths write after a read, with the ones to name;
- one forced two-actor race (simultaneous): it fails when the barrier did not hold both
  actors after their reads, which is the setup a green gate cannot be trusted with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from racebench.harness.database import DatabaseError
from racebench.harness.requests import Answer, Request
from racebench.harness.target import writes
from racebench.harness.target.barrier import BarrierError
from racebench.harness.target.file import HttpCall, TargetSpec
from racebench.harness.target.race import TargetPayment, TargetRace, run_target_once
from racebench.harness.target.service import TargetUnreachable, running, target_database
from racebench.harness.target.session import Session
from racebench.razorpay import RazorpayEvent


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    words: str


class CheckFailed(Exception):
    pass


def check_variant(spec: TargetSpec) -> str | None:
    """The build a check starts: the first variant expected to hold (else the first)."""
    if not spec.takes_variant:
        return None
    if not spec.variants:
        return None
    holding = [v for v in spec.variants.values() if not v.canary]
    return (holding or list(spec.variants.values()))[0].name


async def check_target(
    spec: TargetSpec, database_url: str | None = None
) -> tuple[list[Step], bool]:
    """Run the steps; (the steps, whether the target is reachable at all). The second is
    False when the service or the database could not be reached (exit 2)."""
    steps: list[Step] = []
    try:
        with target_database(spec, database_url) as database:
            with running(spec, check_variant(spec), database.url) as target:
                steps.append(Step("service", True, f"{target.base_url}{spec.service.health} is up"))
                async with Session.open(target, database=database) as session:
                    steps.append(Step("database", True, "connected"))
                    await _steps(spec, session, steps)
    except TargetUnreachable as error:
        steps.append(Step("service", False, str(error)))
        return steps, False
    except DatabaseError as error:
        steps.append(Step("database", False, str(error)))
        return steps, False
    except CheckFailed:
        pass
    return steps, True


async def _steps(spec: TargetSpec, session: Session, steps: list[Step]) -> None:
    def fail(name: str, words: str) -> CheckFailed:
        steps.append(Step(name, False, words))
        return CheckFailed(words)

    try:
        await session.barrier.hold()
        await session.barrier.release()
        steps.append(Step("barrier", True, f"LOCK TABLE {', '.join(spec.barrier_tables)} works"))
    except BarrierError as error:
        raise fail("barrier", str(error)) from None
    for inv in spec.invariants:
        try:
            await session.db.prepare(inv.sql)
        except asyncpg.PostgresError as error:
            raise fail(
                f"invariant {inv.code}", f"the query does not parse or run: {error}"
            ) from None
    steps.append(Step("invariants", True, f"{len(spec.invariants)} queries parse"))

    race = TargetRace(session)

    async def fresh() -> TargetPayment:
        try:
            invoice = None
            if spec.payment.invoice_sql is not None:
                invoice = await race.invoice(100_000)
            return await race.payment(invoice_id=invoice)
        except (RuntimeError, KeyError, asyncpg.PostgresError) as error:
            raise fail("payment", f"could not make a payment: {error}") from None

    payment = await fresh()
    steps.append(Step("payment", True, f"made: {payment.values}"))
    if spec.can_share_invoice():
        steps.append(Step("split_invoice", True, "payments can share an invoice"))

    verify_writes = await _path(
        race,
        steps,
        fail,
        "verify",
        spec.verify,
        race.verify("client", payment),
        payment,
        "a rejected signature? check [razorpay].key_secret and the [verify].json field names",
    )
    other = await fresh()
    webhook_writes = await _path(
        race,
        steps,
        fail,
        "webhook",
        spec.webhook,
        race.webhook("webhook", other, RazorpayEvent.PAYMENT_CAPTURED),
        other,
        "a rejected signature? check [razorpay].webhook_secret",
    )
    if not spec.webhook.acted and spec.payment.captured_sql is None:
        if not set(webhook_writes.tables()) & set(verify_writes.tables()):
            raise fail(
                "webhook",
                f"it wrote {webhook_writes.describe()}, none of the tables the verify "
                f"wrote ({verify_writes.describe()}): it did not capture. Does the "
                "service match the payload racebench sends (docs/targets.md)? Name "
                "[webhook].acted or [payment].captured_sql so that the check can tell",
            )
        steps.append(
            Step(
                "webhook",
                True,
                "not checked that it captured: name [webhook].acted (the answer's field and "
                "its values) or [payment].captured_sql",
            )
        )
    result = await race.check()
    if race.errors:
        raise fail("invariants", "; ".join(race.errors))
    if not result.valid:
        raise fail("invariants", f"one capture already violates: {result.message()}")
    steps.append(Step("invariants", True, "hold after one capture by each path"))

    _barrier_tables(spec, steps, verify_writes, webhook_writes)
    await _forced_race(session, steps, fail)


async def _path(
    race: TargetRace,
    steps: list[Step],
    fail: Callable[[str, str], CheckFailed],
    name: str,
    call: HttpCall,
    request: Request,
    payment: TargetPayment,
    hint: str,
) -> writes.Probe:
    """One capture path alone: its answer, what it says, what it wrote, what it captured."""
    answer: Answer
    answer, probed = await writes.probe(race.session.database.url, lambda: race.then(request))
    if not 200 <= answer.status < 300:
        raise fail(
            name,
            f"{request.words} answered {answer.status}: {str(answer.body)[:300]} ({hint})",
        )
    words = f"answered {answer.status} {str(answer.body)[:120]}; wrote {probed.describe()}"
    acted = call.says_it_acted(answer.body)
    if acted is False:
        expected = ", ".join(f"{k} in {list(v)}" for k, v in call.acted.items())
        raise fail(
            name,
            f"{words}; the answer does not say it acted ({expected}): the service ignored it? "
            "(what racebench sends: docs/targets.md)",
        )
    captured_sql = race.spec.payment.captured_sql
    if captured_sql is not None:
        rows = await race.session.db.fetch(captured_sql, [payment.id])
        if not rows:
            raise fail(name, f"{words}; but [payment].captured_sql does not see it captured")
        words += "; captured"
    steps.append(Step(name, True, words))
    return probed


def suggested_barrier(verify: writes.Probe, webhook: writes.Probe) -> list[str]:
    """The tables to hold: those both capture paths write after a read (else either's)."""
    first = verify.tables(after_read=True)
    second = webhook.tables(after_read=True)
    both = [t for t in first if t in second]
    return both or list(dict.fromkeys(first + second))


def _barrier_tables(
    spec: TargetSpec, steps: list[Step], verify: writes.Probe, webhook: writes.Probe
) -> None:
    """barrier_tables against the tables both capture paths write after a read (not a stop:
    the forced race then shows what it costs)."""
    suggested = suggested_barrier(verify, webhook)
    listing = "barrier_tables = [" + ", ".join(f'"{t}"' for t in suggested) + "]"
    named = [t for t in suggested if any(_same_table(t, b) for b in spec.barrier_tables)]
    if not named:
        steps.append(
            Step(
                "barrier_tables",
                False,
                f"{', '.join(spec.barrier_tables)} is none of the tables both capture paths "
                f"write after a read ({', '.join(suggested) or 'none seen'}): the barrier "
                f"would hold nobody after a read. Name those: {listing}",
            )
        )
        return
    steps.append(
        Step(
            "barrier_tables",
            True,
            f"{', '.join(named)} of the tables both paths write after a read ({listing})",
        )
    )


def _same_table(a: str, b: str) -> bool:
    return a.rpartition(".")[2] == b.rpartition(".")[2]


async def _forced_race(
    session: Session, steps: list[Step], fail: Callable[[str, str], CheckFailed]
) -> None:
    """One simultaneous race: both paths held after their reads before either answered."""

    async def simultaneous(race: TargetRace) -> None:
        payment = await race.payment()
        await race.together(race.verify("client", payment), race.webhook("webhook", payment))

    outcome = await run_target_once(simultaneous, session)
    forced_nothing = [e for e in outcome.errors if "forced nothing" in e]
    if forced_nothing:
        raise fail("forced race", forced_nothing[0])
    if outcome.errors:
        raise fail("forced race", "; ".join(outcome.errors[:3]))
    caught = f"; and caught: {outcome.check.message()}" if outcome.caught else ""
    steps.append(Step("forced race", True, f"client and webhook both held after a read{caught}"))


__all__ = ["Step", "check_target"]
