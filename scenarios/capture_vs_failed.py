"""capture_vs_failed: a payment.failed webhook races the checkout callback's capture.

    T0  failure  payment.failed              -- reads payment: pending (none), or takes the lock
    T1  client   POST /payments/verify       -- captures, COMMIT (none), or BLOCKS on the lock
    T2  failure  UPDATE failed, COMMIT       -- none: overwrites captured (STATUS_REGRESSION)
    the payment ends captured

On a target, racebench holds the payment's row itself ([payment].lock_sql): the client goes
first and waits on that row, holding PostgreSQL's place in line; the failure goes second, reads
`pending` if nothing stops it, and queues behind the client. When racebench lets go, the client
captures and commits first, then the failure writes.

Expected: `none` is caught (the unguarded failure write moves a captured payment back to
failed: STATUS_REGRESSION, and the capture's allocation and receipt are left on a failed payment:
PARTIAL_CAPTURE). Every other strategy holds: the failure is refused once the capture has
committed (a conditional or versioned write, a serialization failure), or it commits first
under the lock and the capture then captures the failed payment; the payment ends captured.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, commit, reach
from racebench.harness.target.race import TargetRace
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.race_points import RacePoint
from racebench.scenarios.base import Scenario

FAILURE_READS_CAPTURE_COMMITS = Schedule.of(
    "the failure reads pending, the capture commits, then the failure commits",
    reach("T0", "failure", RacePoint.AFTER_READ),
    commit("T1", "client", "capture, COMMIT (or BLOCKS)"),
    commit("T2", "failure", "UPDATE failed, COMMIT"),
)


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.together(
        race.webhook("failure", payment, RazorpayEvent.PAYMENT_FAILED),
        race.verify("client", payment),
        schedule=FAILURE_READS_CAPTURE_COMMITS,
    )
    status = await race.status_of(payment)
    if status != "captured":
        race.fail(f"payment {payment.id} should end captured, not {status}")


async def on_target(race: TargetRace) -> None:
    """The client first in line on the payment's row, the failure behind it."""
    payment = await race.payment()
    await race.together(
        race.verify("client", payment),
        race.webhook("failure", payment, RazorpayEvent.PAYMENT_FAILED),
        ordered=True,
        row=payment,
    )
    await race.must_end_captured(payment)


SCENARIO = Scenario(
    "capture_vs_failed",
    "payment.failed reads pending, the capture commits first",
    script,
    catches_races=True,
    modes=("in_process", "http"),
    target=on_target,
    target_needs=("lock_sql",),
)
