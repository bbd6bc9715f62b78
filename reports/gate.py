"""The CI gates: the race gate (no safe strategy broke, every unsafe one was caught) and the
performance gate (throughput and p99 against a baseline run, within named thresholds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from racebench.harness.invariants import describe_violations
from racebench.reports import formatting as fmt
from racebench.reports import stats
from racebench.reports.matrix import Matrix, Outcome
from racebench.reports.summary import BenchSummary, PairedChange, RunSummary, expected_to_hold
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
        f"{b.arm} round {b.round} ({b.profile}): {fmt.counts(b.violations)}"
        for b in summary.rounds
        if any(b.violations.values()) and expected_to_hold(b)
    ]
    errored = [
        f"{b.arm} round {b.round} ({b.profile}): {b.error}" for b in summary.rounds if b.errored
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
                r.errored for r in new.rounds if (r.profile, r.arm) == (profile, strategy)
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


def past_threshold(interval: stats.Interval | None, limit_pct: float, *, worse: int) -> bool:
    """Does the whole interval lie past the threshold? `worse` is -1 when lower is worse
    (throughput), +1 when higher is (latency). With one round there is no interval: the
    single difference decides."""
    if interval is None:
        return False
    if interval.low is None or interval.high is None:
        return worse * interval.mean > limit_pct
    nearest = interval.high if worse < 0 else interval.low
    return worse * nearest > limit_pct


def performance_checks(
    name: str,
    throughput: stats.Interval | None,
    p99: stats.Interval | None,
    p99_change_ms: float,
    thresholds: Thresholds,
    throughput_figures: str,
    p99_figures: str,
    aggregate: str = stats.PAIRED_MEAN,
) -> list[Check]:
    """Throughput and p99 against their thresholds: a check fails only when the difference's
    whole 95% interval lies past the threshold (a p99 rise under min_p99_increase_ms passes).
    The figures are the two medians; `aggregate` names what the verdict's percentage is."""
    drop_failed = past_threshold(throughput, thresholds.max_throughput_drop_pct, worse=-1)
    p99_failed = (
        past_threshold(p99, thresholds.max_p99_increase_pct, worse=+1)
        and p99_change_ms >= thresholds.min_p99_increase_ms
    )
    return [
        Check(
            f"throughput {name}",
            not drop_failed,
            f"{stats.MEDIANS} {throughput_figures}; "
            f"{aggregate}: {stats.verdict(throughput, stats.THROUGHPUT)}; "
            f"fails past a {thresholds.max_throughput_drop_pct:g}% drop",
        ),
        Check(
            f"p99 {name}",
            not p99_failed,
            f"{stats.MEDIANS} {p99_figures}; "
            f"{aggregate}: {stats.verdict(p99, stats.P99_LATENCY)}; fails past "
            f"+{thresholds.max_p99_increase_pct:g}% (and +{thresholds.min_p99_increase_ms:g} ms)",
        ),
    ]


def paired_gate(summary: RunSummary, thresholds: Thresholds) -> GateResult:
    """The performance gate inside one bench: each strategy against the first one the bench
    ran, on the round-by-round differences (`racebench bench --gate`)."""
    checks = []
    for profile, by_arm in summary.bench.items():
        arms = list(by_arm)
        if len(arms) < 2:
            continue
        base = by_arm[arms[0]]
        for arm in arms[1:]:
            summary_arm = by_arm[arm]
            paired = PairedChange.of(summary_arm.rounds, base.rounds)
            if paired is None:
                continue
            checks += performance_checks(
                f"{arm} vs {arms[0]} ({profile})",
                paired.throughput,
                paired.p99,
                paired.p99_delta_ms,
                thresholds,
                f"{fmt.rps(base.throughput_rps.median)} -> "
                f"{fmt.rps(summary_arm.throughput_rps.median)}",
                f"{fmt.ms(base.p99_ms.median)} -> {fmt.ms(summary_arm.p99_ms.median)}",
            )
    if not checks:
        return GateResult([Check("performance", False, "fewer than two strategies to compare")])
    return GateResult(checks)


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
        throughput = stats.welch(
            [r.throughput_rps for r in c.old.rounds], [r.throughput_rps for r in c.new.rounds]
        )
        p99 = stats.welch(
            [r.latency_ms.p99 for r in c.old.rounds], [r.latency_ms.p99 for r in c.new.rounds]
        )
        old_rps, new_rps = c.old.throughput_rps.median, c.new.throughput_rps.median
        old_p99, new_p99 = c.old.p99_ms.median, c.new.p99_ms.median
        checks += performance_checks(
            name,
            throughput,
            p99,
            c.p99_change_ms,
            thresholds,
            f"{fmt.rps(old_rps)} -> {fmt.rps(new_rps)}",
            f"{fmt.ms(old_p99)} -> {fmt.ms(new_p99)}",
            aggregate=stats.WELCH_MEAN,
        )
        new_violations = sum(c.new.violations.values()) - sum(c.old.violations.values())
        expected = not all(expected_to_hold(r) for r in c.new.rounds)
        if new_violations > 0 and not expected:
            checks.append(
                Check(
                    f"new violations {name}",
                    False,
                    f"{describe_violations(c.old.violations, c.old.incidents)} -> "
                    f"{describe_violations(c.new.violations, c.new.incidents)}",
                )
            )
    return GateResult(checks + missing, comparisons)
