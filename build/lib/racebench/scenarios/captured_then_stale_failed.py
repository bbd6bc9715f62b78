"""captured_then_stale_failed: the capture lands; a stale payment.failed arrives after it.

    client   POST /payments/verify      -- captures, COMMIT
    webhook  payment.failed (stale)     -- reads captured: kept as "ignored", never applied

Expected: safe for every strategy: a captured payment never moves back (STATUS_REGRESSION).
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.scenarios.base import Scenario


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.then(race.verify("client", payment))
    stale = await race.then(race.webhook("webhook", payment, "payment.failed"))
    if stale.body != {"status": "ignored"}:
        race.fail(f"a stale failure after the capture should be ignored: {stale.body}")


SCENARIO = Scenario("captured_then_stale_failed", "captured, then a stale payment.failed", script)
