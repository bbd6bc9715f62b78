"""failed_then_captured: a payment.failed arrives first; then the capture races the callback.

    webhook1  payment.failed            -- pending -> failed, COMMIT
    T1 client POST /payments/verify     -- reads payment: failed (capturable)
    T1 webhook2 payment.captured        -- reads failed too (none), or BLOCKS
    (rendezvous, then both go on)
    the payment ends captured

Expected: a failed payment can still be captured, exactly once. `none` is caught (both
capture); every other strategy captures once and ends `captured`.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, rendezvous
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.models import WebhookOutcome
from racebench.scenarios.base import Scenario

BOTH_READ_FAILED = Schedule.of("both read failed", rendezvous("T1"))


async def script(race: Race) -> None:
    payment = await race.payment()
    failed = await race.then(race.webhook("webhook1", payment, RazorpayEvent.PAYMENT_FAILED))
    if failed.body != {"status": WebhookOutcome.PROCESSED}:
        race.fail(f"payment.failed should be processed first: {failed.body}")
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook2", payment, RazorpayEvent.PAYMENT_CAPTURED),
        schedule=BOTH_READ_FAILED,
    )
    status = await race.status_of(payment)
    if status != "captured":
        race.fail(f"payment {payment.id} should end captured, not {status}")


async def on_target(race: TargetRace) -> None:
    payment = await race.payment()
    await race.then(race.webhook("webhook1", payment, RazorpayEvent.PAYMENT_FAILED))
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook2", payment, RazorpayEvent.PAYMENT_CAPTURED),
    )


SCENARIO = Scenario(
    "failed_then_captured",
    "failed first, then capture vs callback",
    script,
    catches_races=True,
    target=on_target,
)
