"""webhook_first: the webhook captures; the client's callback comes after and is a replay.

    webhook  POST /webhooks/razorpay    -- captures, COMMIT
    client   POST /payments/verify      -- reads captured: IDEMPOTENT SKIP (replayed: true)

Expected: safe for every strategy, `none` included (nothing runs concurrently).
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.scenarios.base import Scenario


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED))
    answer = await race.then(race.verify("client", payment))
    if answer.status != 200 or answer.body.get("replayed") is not True:
        race.fail(f"the client's late callback should be a replay: {answer.body}")


async def on_target(race: TargetRace) -> None:
    payment = await race.payment()
    await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED))
    await race.then(race.verify("client", payment))


SCENARIO = Scenario(
    "webhook_first", "webhook, then the client's callback", script, target=on_target
)
