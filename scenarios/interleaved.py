"""interleaved: the write-up's T0-T7 timeline, forced with the race points.

    T0  client   reads payment: status = pending
    T2  client   verifies signature (the service does it right after the read)
    T1  webhook  reads payment: status = pending     -- a locking strategy: BLOCKS here
    T3  webhook  verified signature (the service does it on arrival, before the read)
    T4  client   UPDATE status = captured; UPDATE invoice
    T5  webhook  UPDATE status = captured; UPDATE invoice (DUPLICATE!)
                                                     -- optimistic/conditional/serializable:
                                                        BLOCKS on the client's row
    T6  client   COMMIT                              -- this unblocks the webhook
    T7  webhook  COMMIT                              -- or: sees captured, IDEMPOTENT SKIP

Expected: `none` is caught every time; app_lock is caught over HTTP (client and webhook on two
workers); every other strategy captures exactly once.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, commit, reach
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.race_points import RacePoint
from racebench.scenarios.base import Scenario

T0_T7 = Schedule.of(
    "the write-up's T0-T7",
    # The service checks the checkout signature right after its read (T2 by then), and the
    # webhook's signature on arrival, before its read (T3 by then).
    reach("T0", "client", RacePoint.AFTER_READ, also=(("T2", "verifies signature: valid"),)),
    reach(
        "T1",
        "webhook",
        RacePoint.AFTER_READ,
        also=(("T3", "verified signature on arrival: valid"),),
    ),
    reach("T4", "client", RacePoint.BEFORE_COMMIT, "UPDATE status = captured; UPDATE invoice"),
    reach("T5", "webhook", RacePoint.BEFORE_COMMIT, "UPDATE status = captured; UPDATE invoice"),
    commit("T6", "client"),
    commit("T7", "webhook"),
)


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED),
        schedule=T0_T7,
    )


SCENARIO = Scenario(
    "interleaved",
    "the write-up's T0-T7, forced",
    script,
    catches_races=True,
    modes=("in_process", "http"),
)
