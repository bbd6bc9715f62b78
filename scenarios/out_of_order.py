"""out_of_order: payment.authorized, payment.captured and order.paid, in every order, at once.

Razorpay's auto-capture sends all three; any of them may arrive first. For each of the six
orders (a fresh payment each), the first event goes in ahead and the other two race it:

    T0  first    reads payment: pending
    T1  second   reads payment: pending (none, optimistic, ...), or BLOCKS on first's lock
    T2  third    the same, while `first` is still open
    T3  first    COMMIT (it runs through to its commit; nobody holds it any more)
    T4  second   captures again (none: DUPLICATE!), or sees captured: no effect
    T5  third    the same

Expected: `none` is caught (three captures of one payment); every other strategy captures
exactly once whatever the order.
"""

from __future__ import annotations

from itertools import permutations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, commit, reach
from racebench.harness.target.race import TargetRace
from racebench.razorpay import CAPTURE_EVENTS
from racebench.reference_service.race_points import RacePoint
from racebench.scenarios.base import Scenario


def first_ahead(first: str, second: str, third: str) -> Schedule:
    return Schedule.of(
        f"{first} first",
        reach("T0", first, RacePoint.AFTER_READ),
        reach("T1", second, RacePoint.AFTER_READ),
        reach("T2", third, RacePoint.AFTER_READ),
        commit("T3", first),
        commit("T4", second),
        commit("T5", third),
    )


async def script(race: Race) -> None:
    for order in permutations(CAPTURE_EVENTS):
        payment = await race.payment()
        await race.together(
            *(race.webhook(event, payment, event) for event in order),
            schedule=first_ahead(*order),
        )


async def on_target(race: TargetRace) -> None:
    """Every order, each event sent once the one before it is held back by the barrier."""
    for order in permutations(CAPTURE_EVENTS):
        payment = await race.payment()
        await race.together(*(race.webhook(event, payment, event) for event in order), ordered=True)


SCENARIO = Scenario(
    "out_of_order",
    "authorized, captured, order.paid in every order, concurrently",
    script,
    catches_races=True,
    target=on_target,
)
