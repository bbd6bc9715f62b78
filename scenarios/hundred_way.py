"""hundred_way: 100 copies of the checkout callback at the same instant (the write-up's Test 3).

    v001..v100  POST /payments/verify   -- launched together behind one barrier
    (rendezvous: the first two that read pending are held until both have, unless a lock
     lets only one through; then everyone goes on)
    exactly one captures; 99 answer replayed: true

Expected: `none` is caught; app_lock is caught over HTTP with two workers; every other
strategy captures exactly once. With --no-schedule the rendezvous is off and the launch alone
decides (the detection rate is then a measurement, not a guarantee).
"""

from __future__ import annotations

from dataclasses import replace

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, rendezvous
from racebench.harness.target.race import TargetRace
from racebench.scenarios.base import Scenario

CONCURRENT_VERIFIES = 100
TWO_READ_PENDING = Schedule.of("two read pending", rendezvous("T1", quorum=2))


async def script(race: Race) -> None:
    payment = await race.payment()
    callback = race.verify("v000", payment)
    requests = [replace(callback, actor=f"v{i:03d}") for i in range(1, CONCURRENT_VERIFIES + 1)]
    # Each must answer 2xx: Race counts any other answer as an error of the run.
    await race.together(*requests, schedule=TWO_READ_PENDING)


async def on_target(race: TargetRace) -> None:
    """100 verifies behind the barrier; it lets go once two (or more) read pending and wait:
    a service's connection pool keeps the rest out of the database until then."""
    payment = await race.payment()
    await race.together(
        *(race.verify(f"v{i:03d}", payment) for i in range(1, CONCURRENT_VERIFIES + 1)),
        quorum=2,
    )


SCENARIO = Scenario(
    "hundred_way",
    "100 concurrent verifies",
    script,
    catches_races=True,
    modes=("in_process", "http"),
    target=on_target,
)
