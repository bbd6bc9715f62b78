"""retry_after_lock_timeout: a webhook delivery's capture times out on a row lock the harness
holds; then Razorpay redelivers the same event.

    T0  (fault)     the harness takes the payment's row lock (SELECT ... FOR UPDATE) and holds it
    T0  delivery    payment.captured            -- claims the event id, then BLOCKS on the row
                                                   (at its FOR UPDATE, or at its UPDATE for the
                                                   strategies that read without a lock)
        ...         lock_timeout fires (55P03)  -- rolls back: answers 503 busy, Retry-After
        (fault)     the harness lets the lock go
    redelivery      the SAME event id again     -- must capture: answers processed

Every strategy writes the payment's row, so every one blocks on the held lock, the ones that
never take a row lock themselves (none, conditional_update, optimistic, serializable,
app_lock) at their UPDATE. The service runs with a real lock timeout of LOCK_TIMEOUT_MS (not
its default 5 s) so that the matrix stays fast. In process only in the matrix: over http the
short timeout would need a service of its own per strategy (tests/scenarios/test_fault_steps.py
plays it over http once, for for_update).

On a target, racebench holds the payment's row ([payment].lock_sql) until the delivery answers:
the service's own lock timeout must fire. Razorpay then redelivers what was not acknowledged,
and every 2xx capture must be captured (the client ledger, [payment].captured_sql).

Expected: safe for every strategy. The delivery that timed out was not acknowledged and left
nothing behind (its claim of the event id rolled back with it), so the redelivery captures,
once, and the payment ends captured.
"""

from __future__ import annotations

from racebench.harness.requests import ANY_STATUS
from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, hold_lock
from racebench.harness.target.race import TargetRace
from racebench.reference_service.models import WebhookOutcome
from racebench.scenarios.base import Scenario

# The service's lock_timeout for this scenario: far above a capture (a few ms), so nothing but
# the held lock can trip it, and short enough that the run stays fast.
LOCK_TIMEOUT_MS = 300

BLOCKED_PAST_THE_LOCK_TIMEOUT = Schedule.of(
    "the harness holds the payment's row lock past the delivery's lock timeout",
    hold_lock("T0", "delivery"),
)


async def script(race: Race) -> None:
    payment = await race.payment()
    event = race.event(payment)
    # 503 busy when the lock is held; with the schedules off nothing holds it: 200.
    first = race.deliver("delivery", event, expect=(503,) if race.use_schedules else ())
    await race.together(first, schedule=BLOCKED_PAST_THE_LOCK_TIMEOUT)
    again = await race.then(race.deliver("redelivery", event))
    if again.body != {"status": WebhookOutcome.PROCESSED} and race.use_schedules:
        race.fail(f"the redelivery of an event that timed out should capture: {again.body}")
    status = await race.status_of(payment)
    if status != "captured":
        race.fail(f"payment {payment.id} should end captured, not {status}")


async def on_target(race: TargetRace) -> None:
    """The delivery waits on racebench's row lock until the service gives up; a redelivery."""
    payment = await race.payment()
    event = race.event(payment)
    [first] = await race.together(
        race.deliver("delivery", event, expect=ANY_STATUS), row=payment, fault="outlast"
    )
    if not 200 <= first.status < 300:
        await race.then(race.deliver("redelivery", event))
    await race.must_end_captured(payment)


SCENARIO = Scenario(
    "retry_after_lock_timeout",
    "a delivery times out on a held row lock; the redelivery captures",
    script,
    lock_timeout_ms=LOCK_TIMEOUT_MS,
    target=on_target,
    target_needs=("lock_sql", "captured_sql"),
)
