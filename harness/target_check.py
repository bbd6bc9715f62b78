"""`racebench target check FILE`: one real payment, one verify, one webhook, in plain words.

Each step says what it found; the first that cannot go on stops the check (an unreachable
URL, a database that does not answer, a barrier table missing or not lockable, a query that
does not parse, a signature the service rejects: its answer is shown).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from racebench.harness.barrier import BarrierError
from racebench.harness.database import DatabaseError
from racebench.harness.target_file import TargetSpec
from racebench.harness.target_race import Session, TargetRace, TargetUnreachable, running
from racebench.reference_service.events import RazorpayEvent

# A target that takes {strategy} (the reference service) is checked under this one.
CHECK_STRATEGY = "for_update"


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    words: str


class CheckFailed(Exception):
    pass


async def check_target(spec: TargetSpec) -> tuple[list[Step], bool]:
    """Run the steps; (the steps, whether the target is reachable at all). The second is
    False when the service or the database could not be reached (exit 2)."""
    steps: list[Step] = []
    try:
        strategy = CHECK_STRATEGY if spec.strategy_placeholder else None
        with running(spec, strategy) as target:
            steps.append(Step("service", True, f"{target.base_url}{spec.service.health} is up"))
            async with Session.open(target) as session:
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
    try:
        payment = await race.payment()
    except (RuntimeError, KeyError, asyncpg.PostgresError) as error:
        raise fail("payment", f"could not make a payment: {error}") from None
    steps.append(Step("payment", True, f"made: {payment.values}"))
    if spec.can_share_invoice():
        steps.append(Step("split_invoice", True, "payments can share an invoice"))

    answer = await race.then(race.verify("client", payment))
    if not 200 <= answer.status < 300:
        raise fail(
            "verify",
            f"{spec.verify.method} {spec.verify.path} answered {answer.status}: "
            f"{str(answer.body)[:300]} (a rejected signature? check [razorpay].key_secret and "
            "the [verify].json field names)",
        )
    steps.append(Step("verify", True, f"answered {answer.status}"))
    answer = await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED))
    if not 200 <= answer.status < 300:
        raise fail(
            "webhook",
            f"POST {spec.webhook_path} answered {answer.status}: {str(answer.body)[:300]} "
            "(a rejected signature? check [razorpay].webhook_secret)",
        )
    steps.append(Step("webhook", True, f"answered {answer.status}"))
    result = await race.check()
    if race.errors:
        raise fail("invariants", "; ".join(race.errors))
    if not result.valid:
        raise fail("invariants", f"one capture already violates: {result.counts}")
    steps.append(Step("invariants", True, "hold after one capture"))


__all__ = ["Step", "check_target"]
