"""A hint confirmed or refuted by forcing the race it suspects (racebench hints --confirm).

A hint becomes a scenario and a gate:
- lost_update (or split_check) on the payment's own table: `simultaneous` (the checkout
  callback against the webhook, on one payment); on any other table (the invoice),
  `split_invoice` (two payments of one invoice), when the target can make an invoice that
  payments share;
- read_skew: `split_invoice` (another payment's capture must commit between the two reads);
- check_then_insert: `simultaneous`;
  each explored (racebench explore) with only the statements that touch the hint's tables as
  decision points: the contended table is gated at its first write, as the barrier would, and
  every other statement runs as it comes. The search stops at the first violation.
- claim_first: a fault, not an interleaving: `retry_after_failed_capture` raced (racebench
  race, the barrier and its fault) `runs` times.

Confirmed: an invariant of the target broke (the failing schedule is kept). Refuted: every
schedule within the preemption bound was explored (or every run raced) and nothing broke.
Unsettled: the budget ran out first, or a harness artifact got in the way: neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from racebench.harness.explore.explorer import (
    ScheduleRun,
    SearchResult,
    explore,
    result_line,
)
from racebench.harness.hints.accesses import gates
from racebench.harness.hints.rules import Hint
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.matrix import race_target_scenario
from racebench.harness.target.race import TargetScript

Verdict = Literal["confirmed", "refuted", "unsettled"]
DEFAULT_BUDGET = 60  # schedules per hint (explore), runs per hint (a fault)
DEFAULT_BOUND = 2  # preemptions
FAULT_SCENARIO = "retry_after_failed_capture"


@dataclass
class Confirmation:
    """What forcing one hint showed."""

    verdict: Verdict
    scenario: str
    method: Literal["explore", "race"]
    said: str  # the guarantee, in one sentence
    schedules: int  # schedules explored, or runs raced
    seconds: float
    violations: dict[str, int] = field(default_factory=dict)  # invariant code -> rows
    failure: ScheduleRun | None = None


def scenario_for(hint: Hint, spec: TargetSpec, payment_table: str | None) -> str:
    """The scenario that forces `hint` (see the module's docstring)."""
    if hint.kind == "claim_first":
        return FAULT_SCENARIO
    shared = spec.can_share_invoice()
    if hint.kind == "read_skew" and shared:
        return "split_invoice"
    if (
        hint.kind in ("lost_update", "split_check")
        and shared
        and payment_table
        not in (
            None,
            hint.table,
        )
    ):
        return "split_invoice"
    return "simultaneous"


def cannot(scenario: str, why: str) -> Confirmation:
    """A hint whose scenario does not run on the target: unsettled, and why."""
    return Confirmation("unsettled", scenario, "explore", f"not forced: {why}", 0, 0.0)


async def confirm(
    hint: Hint,
    spec: TargetSpec,
    variant: str | None,
    scenario: str,
    script: TargetScript,
    *,
    budget: int = DEFAULT_BUDGET,
    bound: int = DEFAULT_BOUND,
    database_url: str | None = None,
    progress: Callable[[SearchResult], None] | None = None,
) -> Confirmation:
    """Force `hint` on the target with `scenario`'s `script` (scenario_for names it)."""
    name = scenario
    if hint.kind == "claim_first":
        return await _race(name, script, spec, variant, budget, database_url)
    found = await explore(
        spec,
        variant,
        script,
        bound=bound,
        max_schedules=budget,
        pct_schedules=0,
        stop_at_first=True,
        database_url=database_url,
        progress=progress,
        focus=gates(hint.tables, reads=hint.kind == "read_skew"),
    )
    search, failure = found.search, found.failure
    if failure is not None:
        verdict: Verdict = "confirmed"
        said = f"{search.guarantee()}; {result_line(failure)}"
    elif search.complete and not search.artifacts and not search.errors:
        verdict, said = "refuted", search.guarantee()
    else:
        verdict = "unsettled"
        said = f"{search.guarantee()} (within a budget of {budget} schedules)"
    return Confirmation(
        verdict,
        name,
        "explore",
        said,
        search.schedules,
        search.seconds,
        dict(failure.outcome.check.counts) if failure is not None else {},
        failure,
    )


async def _race(
    name: str,
    script: TargetScript,
    spec: TargetSpec,
    variant: str | None,
    runs: int,
    database_url: str | None,
) -> Confirmation:
    started = time.perf_counter()
    outcomes = await race_target_scenario(
        spec,
        script,
        repeat=runs,
        variant=variant,
        database_url=database_url,
    )
    caught = [o for o in outcomes if o.caught]
    broken = [o for o in outcomes if o.errors and not o.caught]
    seconds = time.perf_counter() - started
    counts: dict[str, int] = {}
    for outcome in caught:
        for code, rows in outcome.violations.items():
            counts[code] = counts.get(code, 0) + rows
    if caught:
        said = (
            f"{len(caught)}/{len(outcomes)} runs of {name} (racebench race, with its fault) "
            f"broke {', '.join(sorted(counts))}"
        )
        return Confirmation("confirmed", name, "race", said, len(outcomes), seconds, counts)
    if broken:
        said = f"{len(broken)}/{len(outcomes)} runs of {name} broke down: {broken[0].errors[0]}"
        return Confirmation("unsettled", name, "race", said, len(outcomes), seconds)
    said = f"{len(outcomes)}/{len(outcomes)} runs of {name} (with its fault) held"
    return Confirmation("refuted", name, "race", said, len(outcomes), seconds)


__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_BUDGET",
    "Confirmation",
    "Verdict",
    "cannot",
    "confirm",
    "scenario_for",
]
