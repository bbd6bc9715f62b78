"""simultaneous: the checkout callback and the webhook arrive at the same instant.

    client   POST /payments/verify      -- reads payment: pending
    webhook  POST /webhooks/razorpay    -- reads payment: pending (none), or BLOCKS (a lock)
    (rendezvous: both are held after their read, then let go together)
    client   UPDATE captured, COMMIT
    webhook  UPDATE captured, COMMIT    -- none: DUPLICATE! (DOUBLE_CAPTURE)

Expected: `none` is caught; app_lock is caught over HTTP with two workers (each worker has its
own lock); every other strategy captures exactly once.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, rendezvous
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.scenarios.base import Scenario

BOTH_READ_PENDING = Schedule.of("both read pending", rendezvous("T1"))


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED),
        schedule=BOTH_READ_PENDING,
    )


async def on_target(race: TargetRace) -> None:
    """Both read pending under the barrier; released together."""
    payment = await race.payment()
    await race.together(race.verify("client", payment), race.webhook("webhook", payment))


SCENARIO = Scenario(
    "simultaneous",
    "client + webhook at once",
    script,
    catches_races=True,
    modes=("in_process", "http"),
    target=on_target,
)
