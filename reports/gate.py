"""The CI gates: the race gate (no safe strategy broke, every unsafe one was caught) and the
performance gate (throughput and p99 against a baseline run, within named thresholds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from racebench.reports import formatting as fmt
from racebench.reports.matrix import Matrix, Outcome
from racebench.reports.summary import BenchSummary, RunSummary, expected_to_hold
from racebench.reports.thresholds import (
    DEFAULT_MAX_P99_INCREASE_PCT,
    DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    DEFAULT_MIN_P99_INCREASE_MS,
)

# The race gate names this many cells for each distinct failure and counts the rest: a gate
# line is read in a CI log, and a broken harness fails all ninety cells the same way.
MAX_CELLS_LISTED = 5
# A failure's text (an error message, violation counts) is cut here for the same reason; the
# full text stays in matrix.md and report.html.
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Thresholds:
    max_throughput_drop_pct: float = DEFAULT_MAX_THROUGHPUT_DROP_PCT
    max_p99_increase_pct: float = DEFAULT_MAX_P99_INCREASE_PCT
    min_p99_increase_ms: float = DEFAULT_MIN_P99_INCREASE_MS


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Comparison:
    """One strategy on one profile, in the baseline and in the new run."""

    profile: str
    strategy: str
    old: BenchSummary
    new: BenchSummary

    @property
    def throughput_change_pct(self) -> float | None:
        return fmt.percent_change(self.new.throughput_rps.median, self.old.throughput_rps.median)

    @property
    def p99_change_pct(self) -> float | None:
        return fmt.percent_change(self.new.p99_ms.median, self.old.p99_ms.median)

    @property
    def p99_change_ms(self) -> float:
        return self.new.p99_ms.median - self.old.p99_ms.median


@dataclass(frozen=True)
class GateResult:
    checks: list[Check] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def unexpected_detail(matrix: Matrix) -> str:
    """The unexpected cells, grouped by what went wrong: one broken import fails every cell
    with the same error, and that error should be read once, not ninety times."""
    by_detail: dict[str, list[str]] = {}
    for row in matrix.rows:
        for s in matrix.strategies:
            cell = matrix.cell(row, s)
            if cell.outcome is Outcome.UNEXPECTED:
                by_detail.setdefault(cell.detail, []).append(f"{row} x {s}")
    groups = []
    for detail, where in by_detail.items():
        shown = ", ".join(where[:MAX_CELLS_LISTED])
        if len(where) > MAX_CELLS_LISTED:
            shown += f" and {len(where) - MAX_CELLS_LISTED} more"
        text = detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 1] + "…"
        groups.append(
            f"{shown}: {text}" if len(where) == 1 else f"{len(where)} cells ({shown}): {text}"
        )
    total = sum(len(w) for w in by_detail.values())
    return f"{total} of {len(matrix.cells)} cells unexpected; " + "; ".join(groups)


def race_checks(summary: RunSummary, matrix: Matrix) -> list[Check]:
    """The race gate: every matrix cell as expected, no violation left by a safe strategy."""
    checks = []
    if matrix.cells:
        ok = matrix.ok
        detail = f"{len(matrix.cells)} cells as expected" if ok else unexpected_detail(matrix)
        checks.append(Check("race matrix", ok, detail))
    broken = [
        f"{b.strategy} round {b.round} ({b.profile}): {fmt.counts(b.violations)}"
        for b in summary.rounds
        if any(b.violations.values()) and expected_to_hold(b)
    ]
    errored = [
        f"{b.strategy} round {b.round} ({b.profile}): {b.error}"
        for b in summary.rounds
        if b.errored
    ]
    if summary.rounds:
        detail = "; ".join(broken) if broken else "no safe strategy left a violation"
        checks.append(Check("benchmark integrity", not broken, detail))
    if errored:
        checks.append(Check("benchmark rounds", False, "; ".join(errored)))
    return checks


def missing_checks(new: RunSummary, old: RunSummary) -> list[Check]:
    """A failing check for each (profile, strategy) the baseline measured and the new run did
    not: a run that leaves out a strategy must not pass the gate by having nothing to compare."""
    checks = []
    for profile, by_strategy in old.bench.items():
        for strategy in by_strategy:
            if strategy in new.bench.get(profile, {}):
                continue
            errored = any(
                r.errored for r in new.rounds if (r.profile, r.strategy) == (profile, strategy)
            )
            why = "every round errored" if errored else "not benchmarked"
            checks.append(
                Check(
                    f"missing {strategy} ({profile})",
                    False,
                    f"in the baseline, but {why} in this run: nothing to compare",
                )
            )
    return checks


def compare(new: RunSummary, old: RunSummary, thresholds: Thresholds) -> GateResult:
    """The performance gate: each strategy benchmarked in both runs, profile by profile, and a
    failure for each one the baseline has and the new run left out."""
    comparisons = [
        Comparison(profile, strategy, old.bench[profile][strategy], summary)
        for profile, by_strategy in new.bench.items()
        for strategy, summary in by_strategy.items()
        if strategy in old.bench.get(profile, {})
    ]
    missing = missing_checks(new, old)
    if not comparisons:
        nothing = "no strategy/profile benchmarked in both runs to compare"
        return GateResult([Check("baseline", False, nothing), *missing])
    checks = []
    for c in comparisons:
        name = f"{c.strategy} ({c.profile})"
        old_rps, new_rps = c.old.throughput_rps.median, c.new.throughput_rps.median
        change = c.throughput_change_pct
        drop_ok = change is None or -change <= thresholds.max_throughput_drop_pct
        checks.append(
            Check(
                f"throughput {name}",
                drop_ok,
                f"{fmt.rps(old_rps)} -> {fmt.rps(new_rps)} ({fmt.delta_percent(new_rps, old_rps)}; "
                f"allowed drop {thresholds.max_throughput_drop_pct:g}%)",
            )
        )
        old_p99, new_p99 = c.old.p99_ms.median, c.new.p99_ms.median
        p99_change = c.p99_change_pct
        p99_ok = (
            p99_change is None
            or p99_change <= thresholds.max_p99_increase_pct
            or c.p99_change_ms < thresholds.min_p99_increase_ms
        )
        checks.append(
            Check(
                f"p99 {name}",
                p99_ok,
                f"{fmt.ms(old_p99)} -> {fmt.ms(new_p99)} ({fmt.delta_percent(new_p99, old_p99)}; "
                f"allowed +{thresholds.max_p99_increase_pct:g}% or "
                f"+{thresholds.min_p99_increase_ms:g} ms)",
            )
        )
        new_violations = sum(c.new.violations.values()) - sum(c.old.violations.values())
        expected = not all(expected_to_hold(r) for r in c.new.rounds)
        if new_violations > 0 and not expected:
            checks.append(
                Check(
                    f"new violations {name}",
                    False,
                    f"{sum(c.old.violations.values())} -> {sum(c.new.violations.values())}: "
                    f"{fmt.counts(c.new.violations)}",
                )
            )
    return GateResult(checks + missing, comparisons)
