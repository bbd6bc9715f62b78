"""split_invoice: two payments of 50000 on one invoice of 100000, captured at the same instant.

    T0  first    reads its payment: pending
    T1  second   reads its payment: pending (another row: nobody blocks)
    T4  first    reads invoice amount_paid = 0, writes 50000
    T5  second   reads invoice amount_paid = 0 (first has not committed), writes 50000
                 -- none: BLOCKS on the invoice row, then overwrites it (LOST UPDATE)
                 -- a safe strategy: BLOCKS before reading the invoice, then reads 50000
    T6  first    COMMIT: the invoice is partially_paid, 50000 of 100000 (its answer says so)
    T7  second   COMMIT: amount_paid = 50000 (none: INVOICE_DRIFT) or 100000, paid

Expected: `none` is caught (a lost update: amount_paid differs from the allocations); every
other strategy leaves the invoice paid, 100000 of 100000, through partially_paid.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, commit, reach
from racebench.harness.target.race import TargetRace
from racebench.reference_service.race_points import RacePoint
from racebench.scenarios.base import Scenario

INVOICE_AMOUNT = 100_000
T0_T7 = Schedule.of(
    "both read the invoice before either commits",
    reach("T0", "first", RacePoint.AFTER_READ),
    reach("T1", "second", RacePoint.AFTER_READ),
    reach("T4", "first", RacePoint.BEFORE_COMMIT, "amount_paid 0 -> 50000"),
    reach("T5", "second", RacePoint.BEFORE_COMMIT, "amount_paid 0 -> 50000 (LOST UPDATE)"),
    commit("T6", "first"),
    commit("T7", "second"),
)


async def script(race: Race) -> None:
    first, second = await race.payments_of_one_invoice(INVOICE_AMOUNT, 2)
    answers = await race.together(
        race.verify("first", first), race.webhook("second", second), schedule=T0_T7
    )
    said = answers[0].body.get("invoice_status") if isinstance(answers[0].body, dict) else None
    if race.use_schedules and said != "partially_paid":  # unscheduled, either may commit first
        race.fail(f"the first capture (T6) should leave the invoice partially_paid, not {said}")


async def on_target(race: TargetRace) -> None:
    """Two payments of one invoice: both read the invoice before either writes (barrier)."""
    first, second = await race.payments_of_one_invoice(INVOICE_AMOUNT, 2)
    await race.together(race.verify("first", first), race.webhook("second", second))


SCENARIO = Scenario(
    "split_invoice",
    "two payments of one invoice captured at once",
    script,
    catches_races=True,
    target=on_target,
    target_needs=("invoice",),
)
