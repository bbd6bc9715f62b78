"""captured_then_stale_failed: the capture lands; a stale payment.failed arrives after it.

    client   POST /payments/verify      -- captures, COMMIT
    webhook  payment.failed (stale)     -- reads captured: kept as "ignored", never applied

Expected: safe for every strategy: a captured payment never moves back (STATUS_REGRESSION).
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.models import WebhookOutcome
from racebench.scenarios.base import Scenario


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.then(race.verify("client", payment))
    stale = await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_FAILED))
    if stale.body != {"status": WebhookOutcome.IGNORED}:
        race.fail(f"a stale failure after the capture should be ignored: {stale.body}")


async def on_target(race: TargetRace) -> None:
    payment = await race.payment()
    await race.then(race.verify("client", payment))
    await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_FAILED))


SCENARIO = Scenario(
    "captured_then_stale_failed", "captured, then a stale payment.failed", script, target=on_target
)
