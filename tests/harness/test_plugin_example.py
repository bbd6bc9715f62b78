"""The README's example: a user's own race test with the plugin's fixtures, in ten lines."""

from __future__ import annotations

from racebench.pytest_plugin import Checker, RaceFactory
from racebench.scenarios.simultaneous import BOTH_READ_PENDING


async def test_checkout_and_webhook_capture_once(
    racebench_race: RaceFactory, racebench_check: Checker
) -> None:
    race = await racebench_race("for_update")
    payment = await race.payment()
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook", payment, "payment.captured"),
        schedule=BOTH_READ_PENDING,  # both read "pending" before either commits, if they can
    )
    await racebench_check(race)  # fails with the evidence: payment ids, counts, event ids
