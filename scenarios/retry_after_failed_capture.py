"""retry_after_failed_capture: a webhook delivery loses its database backend mid-capture; then
Razorpay redelivers the same event.

    T0  delivery    payment.captured            -- reads payment: pending (or takes the lock)
    T0  (fault)     pg_terminate_backend        -- its transaction is gone: answers 503
    delivery2       the SAME event id again     -- must capture: answers processed

Expected: safe for every strategy. A delivery that was not acknowledged left nothing behind
(its claim of the event id rolled back with it), so the redelivery is not taken for a
duplicate: it captures, once, and the payment ends captured. Every 2xx capture answer means
the payment is captured (ACKNOWLEDGED_LOST), every 2xx delivery is kept (WEBHOOK_LOST).
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, kill_backend
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
    await race.together(first, schedule=KILLED_AFTER_READ)
    again = await race.then(race.deliver("redelivery", event))
    if again.body != {"status": WebhookOutcome.PROCESSED} and race.use_schedules:
        race.fail(f"the redelivery of an unacknowledged event should capture: {again.body}")
    status = await race.status_of(payment)
    if status != "captured":
        race.fail(f"payment {payment.id} should end captured, not {status}")


SCENARIO = Scenario(
    "retry_after_failed_capture",
    "a delivery's backend dies mid-capture; the redelivery captures",
    script,
    modes=("in_process", "http"),
)
