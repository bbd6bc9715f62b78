"""What a scenario is: a short script of steps, and whether it can catch an unguarded capture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from racebench.harness.white_box import processes_of
from racebench.reference_service.strategies import holds
from racebench.results import Expected, Mode

if TYPE_CHECKING:
    from racebench.harness.runner import Script
    from racebench.harness.target.file import TargetSpec
    from racebench.harness.target.race import TargetScript

# Why a scenario without a target script does not run on a target.
WHITE_BOX_ONLY = "needs race points inside the service (white-box only)"
# What a target script may need of the target file, and what to add when it lacks it.
TARGET_NEEDS: dict[str, str] = {
    "invoice": "the target cannot put two payments on one invoice (add [payment].invoice_sql)",
    "lock_sql": "needs racebench's own lock on the payment's row (add [payment].lock_sql)",
    "captured_sql": "needs the client ledger's query, is this payment captured (add "
    "[payment].captured_sql)",
}


@dataclass(frozen=True, eq=False)  # identity: a scenario is one module's singleton
class Scenario:
    """One scenario: its script, the modes it runs in, and whether it catches races.

    `catches_races`: the script runs captures concurrently, so a strategy that does not hold
    (reference_service.strategies.holds, with the mode's service processes) is expected to be
    caught (verdict race_detected). Every other cell is expected to hold every invariant.
    """

    name: str
    summary: str
    script: Script
    catches_races: bool = False
    modes: tuple[Mode, ...] = ("in_process",)
    lock_timeout_ms: int | None = None
    """The service's lock timeout for this scenario (None: the service's default, 5 s); a
    scenario that waits one out sets a shorter, real one so that the matrix stays fast."""
    target: TargetScript | None = None
    """The script on a target (harness/target/race.py), black-box, forced by the barrier."""
    target_needs: tuple[str, ...] = ()
    """What the target script needs of the target file (keys of TARGET_NEEDS)."""

    def __post_init__(self) -> None:
        unknown = [n for n in self.target_needs if n not in TARGET_NEEDS]
        if unknown:
            raise ValueError(f"{self.name}: unknown target_needs {unknown}")

    def on_target(self, spec: TargetSpec) -> TargetScript | str:
        """The target script, or why this scenario is skipped on `spec` (never passed)."""
        if self.target is None:
            return WHITE_BOX_ONLY
        has = {
            "invoice": spec.can_share_invoice(),
            "lock_sql": spec.payment.lock_sql is not None,
            "captured_sql": spec.payment.captured_sql is not None,
        }
        for need in self.target_needs:
            if not has[need]:
                return TARGET_NEEDS[need]
        return self.target

    def expected(self, strategy: str, mode: Mode) -> Expected:
        if self.catches_races and not holds(strategy, processes_of(mode)):
            return "race"
        return "safe"
