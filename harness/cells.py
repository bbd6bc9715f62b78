"""The cells of a race matrix and the runs they hold: one scenario against one strategy (or a
target's variant) in one mode, run `repeat` times, and its verdict.

A run's verdict is race_detected if it left a violation, error if it broke (an answer the
request did not expect, a schedule that did not happen, a barrier that forced nothing), safe
otherwise; a cell is race_detected if any run was caught. A cell passes when that matches what
it expects. Shared by the white-box matrix (harness/matrix.py) and target mode
(harness/target/matrix.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from racebench.harness.invariants import CheckResult
from racebench.results import (
    Expected,
    Mode,
    RaceResult,
    TimelineEntry,
    Verdict,
    add_incidents,
    judge,
)

# A healthy run takes well under a second (out_of_order, the longest, has six launches; a
# target's fault scenario waits out the service's own lock timeout); this only bounds a run so
# that a bug (a hang in setup, a launch, the check) cannot hang a CI job.
RUN_TIMEOUT_S = 180.0


class CellScenario(Protocol):
    """What a cell needs of its scenario (racebench.scenarios.base.Scenario is one)."""

    @property
    def name(self) -> str: ...
    def expected(self, strategy: str, mode: Mode) -> Expected: ...


@dataclass
class RunOutcome:
    """What one scenario run left behind."""

    check: CheckResult
    timeline: list[TimelineEntry]
    errors: list[str]

    @property
    def violations(self) -> dict[str, int]:
        return dict(self.check.counts)

    @property
    def caught(self) -> bool:
        return not self.check.valid


@dataclass(frozen=True)
class Cell:
    """One scenario against one strategy (or a target's variant) in one mode. `expectation`
    is what the cell must show; None: what the scenario expects of the strategy."""

    scenario: CellScenario
    strategy: str
    mode: Mode
    expectation: Expected | None = None

    @property
    def expected(self) -> Expected:
        if self.expectation is not None:
            return self.expectation
        return self.scenario.expected(self.strategy, self.mode)

    @property
    def title(self) -> str:
        return f"{self.scenario.name} x {self.strategy} ({self.mode})"

    def wrong(self, outcome: RunOutcome) -> bool:
        """Did this run go against the cell's expectation (a catch where safe was expected, a
        miss where a race was, or an error)?"""
        against = not judge(self.expected, caught=outcome.caught, errored=False).passed
        return against or bool(outcome.errors)


@dataclass
class CellRuns:
    """The runs of one cell, as they come in."""

    cell: Cell
    outcomes: list[RunOutcome] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    duration_ms: float = 0.0
    schedules: bool = True  # were the scenarios' schedules played (--no-schedule: False)

    @property
    def caught(self) -> int:
        return sum(1 for o in self.outcomes if o.caught)

    @property
    def broken(self) -> int:
        """Runs that broke (an error) and were not caught."""
        return sum(1 for o in self.outcomes if o.errors and not o.caught)

    def tally(self) -> str:
        """`4 runs: 1 caught, 3 broke` (the kinds that happened)."""
        n = len(self.outcomes)
        held = n - self.caught - self.broken
        parts = [
            f"{count} {what}"
            for count, what in ((self.caught, "caught"), (self.broken, "broke"), (held, "held"))
            if count
        ]
        return f"{n} run{'s' if n != 1 else ''}: {', '.join(parts)}" if n else "no runs"

    @property
    def verdict(self) -> Verdict:
        """race_detected if any run was caught; else error if any run broke; else safe."""
        if self.caught:
            return "race_detected"
        return "error" if any(o.errors for o in self.outcomes) else "safe"

    def result(self) -> RaceResult:
        violations: dict[str, int] = {}
        for outcome in self.outcomes:
            for code, count in outcome.violations.items():
                violations[code] = violations.get(code, 0) + count
        errors = [e for o in self.outcomes for e in o.errors]
        index = self._telling_run()
        return RaceResult(
            scenario=self.cell.scenario.name,
            strategy=self.cell.strategy,
            mode=self.cell.mode,
            runs=len(self.outcomes),
            expected=self.cell.expected,
            verdict=self.verdict,
            violations=violations,
            incidents=add_incidents(o.check.incidents for o in self.outcomes),
            invariants={
                code: inv for o in self.outcomes for code, inv in o.check.invariants.items()
            },
            duration_ms=round(self.duration_ms, 1),
            caught_runs=self.caught,
            broken_runs=self.broken,
            timeline=self.outcomes[index].timeline if self.outcomes else [],
            error="; ".join(dict.fromkeys(errors)) or None,
            seed=self.seeds[index] if self.seeds else None,
        )

    def first_wrong(self) -> int | None:
        """The index of the first run that went against the expectation, if any."""
        return next((i for i, o in enumerate(self.outcomes) if self.cell.wrong(o)), None)

    def _telling_run(self) -> int:
        """The run whose timeline tells the cell's story: a failing run first, else a catch."""
        wrong = self.first_wrong()
        if wrong is not None:
            return wrong
        return next((i for i, o in enumerate(self.outcomes) if o.caught), 0)


def verdict_line(check: CheckResult, errors: list[str]) -> str:
    """The RESULT line under a timeline, with the first piece of evidence."""
    if check.valid and errors:
        return f"RESULT: ERROR, no invariant violated but the run broke: {errors[0]}"
    if check.valid:
        return "RESULT: exactly once, every invariant holds"
    parts = []
    for code in check.anomaly_types:
        first = check.anomalies[code][0]
        evidence = ", ".join(f"{k}={v}" for k, v in first.items())
        parts.append(f"{code} x{check.counts[code]} ({evidence})")
    return "RESULT: " + "; ".join(parts)
