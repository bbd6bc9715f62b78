"""duplicate_webhook: Razorpay delivers one event (one event id) five times at once.

    d1..d5   POST /webhooks/razorpay, the same bytes and X-Razorpay-Event-Id
    d1       claims the event id (partial unique index), captures, COMMIT
    d2..d5   BLOCK on the index until d1 commits, then find the claim taken: "duplicate"
    every delivery is kept in webhook_events; the event is applied once
    forged   the same event id with a bad signature: 400 (expected), nothing kept or applied

Expected: safe for every strategy, `none` included: deduplication is the claim index's job,
not the lock strategy's.
"""

from __future__ import annotations

from dataclasses import replace

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, rendezvous
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.models import WebhookOutcome
from racebench.scenarios.base import Scenario

DELIVERIES = 5
CLAIM_RACE = Schedule.of("deliveries race for the claim", rendezvous("T1"))


async def script(race: Race) -> None:
    payment = await race.payment()
    event = race.event(payment, RazorpayEvent.PAYMENT_CAPTURED)
    answers = await race.together(
        *(race.deliver(f"d{i}", event) for i in range(1, DELIVERIES + 1)), schedule=CLAIM_RACE
    )
    outcomes = sorted(str(a.body.get("status")) for a in answers if isinstance(a.body, dict))
    if outcomes != [WebhookOutcome.DUPLICATE] * (DELIVERIES - 1) + [WebhookOutcome.PROCESSED]:
        race.fail(f"expected one processed and {DELIVERIES - 1} duplicates, got {outcomes}")
    # Any answer but 400 is an error of the run (Race checks each answer against `expect`).
    await race.then(race.deliver("forged", event.with_bad_signature(), expect=(400,)))


async def on_target(race: TargetRace) -> None:
    """Five deliveries at once, let go once at least two are held after their reads (a service
    may serialise the rest where the database cannot see it, in a pool or an in-process lock)."""
    payment = await race.payment()
    event = race.event(payment, RazorpayEvent.PAYMENT_CAPTURED)
    await race.together(*(race.deliver(f"d{i}", event) for i in range(1, DELIVERIES + 1)), quorum=2)
    forged = replace(race.deliver("forged", event.with_bad_signature()), expect=(400, 401, 403))
    await race.then(forged)


SCENARIO = Scenario(
    "duplicate_webhook", "one event id delivered 5 times at once", script, target=on_target
)
