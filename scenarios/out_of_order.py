"""out_of_order: payment.authorized, payment.captured and order.paid, in every order, at once.

Razorpay's auto-capture sends all three; any of them may arrive first. For each of the six
orders (a fresh payment each), the first event goes in ahead and the other two race it:

    T0  first    reads payment: pending
    T1  second, third   launched while `first` is still open: they read pending (none),
                        or BLOCK on its lock
    T2  first    COMMIT
    T3  second   ...captures again (none: DUPLICATE!) or sees captured: no effect
    T5  third    the same

Expected: `none` is caught (three captures of one payment); every other strategy captures
exactly once whatever the order.
"""

from __future__ import annotations

from itertools import permutations

from harness.runner import Race
from harness.schedule import Schedule, commit, launch, reach
from reference_service.race_points import AFTER_READ
from scenarios.base import Scenario, caught

EVENTS = ("payment.authorized", "payment.captured", "order.paid")


def first_ahead(first: str, second: str, third: str) -> Schedule:
    return Schedule.of(
        f"{first} first",
        reach("T0", first, AFTER_READ),
        launch("T1", second, third),
        commit("T2", first),
        reach("T3", second, AFTER_READ),
        commit("T4", second),
        reach("T5", third, AFTER_READ),
        commit("T6", third),
    )


async def script(race: Race) -> None:
    for order in permutations(EVENTS):
        payment = await race.payment()
        await race.together(
            *(race.webhook(event, payment, event) for event in order),
            schedule=first_ahead(*order),
        )


SCENARIO = Scenario(
    "out_of_order",
    "authorized, captured, order.paid in every order, concurrently",
    script,
    races={"in_process": caught("none")},
)
