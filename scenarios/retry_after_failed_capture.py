"""retry_after_failed_capture: a webhook delivery loses its database backend mid-capture; then
Razorpay redelivers the same event.

    T0  delivery    payment.captured            -- reads payment: pending (or takes the lock)
    T0  (fault)     pg_terminate_backend        -- its transaction is gone: answers 503
    delivery2       the SAME event id again     -- must capture: answers processed

On a target, the delivery is held at the barrier after its read, and racebench terminates its
backend there. Whatever it answers, Razorpay redelivers what was not acknowledged (any non-2xx),
and every 2xx capture must be captured (the client ledger, [payment].captured_sql).

Expected: safe for every strategy. A delivery that was not acknowledged left nothing behind
(its claim of the event id rolled back with it), so the redelivery is not taken for a
duplicate: it captures, once, and the payment ends captured. Every 2xx capture answer means
the payment is captured (ACKNOWLEDGED_LOST), every 2xx delivery is kept (WEBHOOK_LOST).
"""

from __future__ import annotations

from racebench.harness.requests import ANY_STATUS
from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, kill_backend
from racebench.harness.target.race import TargetRace
from racebench.reference_service.models import WebhookOutcome
from racebench.reference_service.race_points import RacePoint
from racebench.scenarios.base import Scenario

KILLED_AFTER_READ = Schedule.of(
    "the delivery's backend is killed after its read",
    kill_backend("T0", "delivery", at=RacePoint.AFTER_READ),
)


async def script(race: Race) -> None:
    payment = await race.payment()
    event = race.event(payment)
    # 503 when the backend is killed; with the schedules off nothing is killed: 200.
    first = race.deliver("delivery", event, expect=(503,) if race.use_schedules else ())
    [answer] = await race.together(first, schedule=KILLED_AFTER_READ)
    # Razorpay redelivers only what was not acknowledged: an acknowledged capture that is not
    # in the database stays lost (the ledger, checked after the launch: ACKNOWLEDGED_LOST).
    if not 200 <= answer.status < 300:
        again = await race.then(race.deliver("redelivery", event))
        if again.body != {"status": WebhookOutcome.PROCESSED}:
            race.fail(f"the redelivery of an unacknowledged event should capture: {again.body}")
    status = await race.status_of(payment)
    if status != "captured":
        race.fail(f"payment {payment.id} should end captured, not {status}")


async def on_target(race: TargetRace) -> None:
    """The delivery's backend is terminated where the barrier holds it; Razorpay redelivers."""
    payment = await race.payment()
    event = race.event(payment)
    [first] = await race.together(
        race.deliver("delivery", event, expect=ANY_STATUS), fault="terminate"
    )
    if not 200 <= first.status < 300:
        await race.then(race.deliver("redelivery", event))
    await race.must_end_captured(payment)


SCENARIO = Scenario(
    "retry_after_failed_capture",
    "a delivery's backend dies mid-capture; the redelivery captures",
    script,
    modes=("in_process", "http"),
    target=on_target,
    target_needs=("captured_sql",),
)
