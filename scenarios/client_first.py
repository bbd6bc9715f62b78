"""client_first: the client's callback captures; the webhook comes after and changes nothing.

    client   POST /payments/verify      -- captures, COMMIT
    webhook  POST /webhooks/razorpay    -- reads captured: IDEMPOTENT SKIP (processed)

Expected: safe for every strategy, `none` included (nothing runs concurrently).
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.scenarios.base import Scenario


async def script(race: Race) -> None:
    payment = await race.payment()
    answer = await race.then(race.verify("client", payment))
    if answer.status != 200 or answer.body.get("replayed") is not False:
        race.fail(f"the client's callback should capture: {answer.body}")
    await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED))


async def on_target(race: TargetRace) -> None:
    payment = await race.payment()
    await race.then(race.verify("client", payment))
    await race.then(race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED))


SCENARIO = Scenario(
    "client_first", "the client's callback, then the webhook", script, target=on_target
)
