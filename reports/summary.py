"""What a run measured, per strategy: medians and spread of the benchmark rounds, each strategy
against the first one round by round, and every violation observed by the race matrix and the
benchmark. Pure computation on results.json; every aggregate of a run is computed here (results
files hold only what was measured)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from racebench.reference_service.strategies import STRATEGY_NAMES, holds
from racebench.reports import stats
from racebench.results import BenchResult, Incidents, RaceResult, Results, add_incidents

BEFORE = "none"  # the write-up's BEFORE
AFTER = "for_update"  # the write-up's AFTER


@dataclass(frozen=True)
class Spread:
    """One metric across rounds: the median, and the lowest and highest round."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        items = list(values)
        if not items:
            raise ValueError("a spread needs at least one value")
        return cls(statistics.median(items), min(items), max(items), len(items))

    @property
    def rel_range(self) -> float:
        """(highest - lowest) / median: how far the rounds disagree."""
        return (self.high - self.low) / self.median if self.median else 0.0


@dataclass(frozen=True)
class PairedChange:
    """One strategy against the baseline strategy, round by round: A and B of one round ran
    back to back on the same machine state, so their ratio is steadier than a ratio of medians.
    Each figure is the median over the rounds both have."""

    baseline: str
    rounds: int
    throughput_change_pct: float  # this / baseline - 1, in percent
    p99_delta_ms: float  # this - baseline
    mean_delta_ms: float
    cpu_per_request_change_pct: float | None  # None when a round has no CPU figure
    # The same differences in percent with their 95% intervals (racebench.reports.stats).
    throughput: stats.Interval | None = None
    mean: stats.Interval | None = None
    p99: stats.Interval | None = None
    cpu_per_request: stats.Interval | None = None

    def verdicts(self) -> dict[str, str]:
        """Each metric's verdict, by the metric's name."""
        return {
            metric.name: stats.verdict(interval, metric)
            for metric, interval in (
                (stats.THROUGHPUT, self.throughput),
                (stats.MEAN_LATENCY, self.mean),
                (stats.P99_LATENCY, self.p99),
                (stats.CPU_PER_REQUEST, self.cpu_per_request),
            )
        }

    @classmethod
    def of(
        cls, rows: Sequence[BenchResult], baseline: Sequence[BenchResult]
    ) -> PairedChange | None:
        by_round = {b.round: b for b in baseline}
        pairs = [(r, by_round[r.round]) for r in rows if r.round in by_round]
        pairs = [(r, b) for r, b in pairs if b.throughput_rps > 0]
        if not pairs:
            return None
        costs = [
            (r.cpu_ms_per_request, b.cpu_ms_per_request)
            for r, b in pairs
            if r.cpu_ms_per_request and b.cpu_ms_per_request
        ]
        return cls(
            baseline=baseline[0].arm,
            rounds=len(pairs),
            throughput_change_pct=statistics.median(
                100.0 * (r.throughput_rps / b.throughput_rps - 1) for r, b in pairs
            ),
            p99_delta_ms=statistics.median(r.latency_ms.p99 - b.latency_ms.p99 for r, b in pairs),
            mean_delta_ms=statistics.median(
                r.latency_ms.mean - b.latency_ms.mean for r, b in pairs
            ),
            cpu_per_request_change_pct=statistics.median(100.0 * (r / b - 1) for r, b in costs)
            if costs
            else None,
            throughput=stats.paired([(b.throughput_rps, r.throughput_rps) for r, b in pairs]),
            mean=stats.paired([(b.latency_ms.mean, r.latency_ms.mean) for r, b in pairs]),
            p99=stats.paired([(b.latency_ms.p99, r.latency_ms.p99) for r, b in pairs]),
            cpu_per_request=stats.paired([(b, r) for r, b in costs]) if costs else None,
        )


@dataclass(frozen=True)
class BenchSummary:
    """The benchmark rounds of one strategy on one profile."""

    strategy: str
    profile: str
    rounds: list[BenchResult]
    mean_ms: Spread
    p50_ms: Spread
    p90_ms: Spread
    p99_ms: Spread
    p999_ms: Spread
    max_ms: Spread
    throughput_rps: Spread
    requests: int
    failures: int
    busy: int
    cpu_ms_per_request: Spread | None  # None when no round has a CPU figure
    violations: Counter[str]
    incidents: Incidents | None  # the violations grouped; None: a round did not count them

    @classmethod
    def of(cls, rounds: list[BenchResult]) -> BenchSummary:
        ordered = sorted(rounds, key=lambda r: r.round)

        def spread(get: Callable[[BenchResult], float]) -> Spread:
            return Spread.of(get(r) for r in ordered)

        violations: Counter[str] = Counter()
        for r in ordered:
            violations.update(r.violations)
        costs = [r.cpu_ms_per_request for r in ordered if r.cpu_ms_per_request]
        return cls(
            strategy=ordered[0].arm,
            profile=ordered[0].profile,
            rounds=ordered,
            mean_ms=spread(lambda r: r.latency_ms.mean),
            p50_ms=spread(lambda r: r.latency_ms.p50),
            p90_ms=spread(lambda r: r.latency_ms.p90),
            p99_ms=spread(lambda r: r.latency_ms.p99),
            p999_ms=spread(lambda r: r.latency_ms.p999),
            max_ms=spread(lambda r: r.latency_ms.max),
            throughput_rps=spread(lambda r: r.throughput_rps),
            requests=sum(r.requests for r in ordered),
            failures=sum(r.failures for r in ordered),
            busy=sum(r.busy for r in ordered),
            cpu_ms_per_request=Spread.of(costs) if costs else None,
            violations=+violations,
            incidents=add_incidents(r.incidents for r in ordered if any(r.violations.values())),
        )


@dataclass(frozen=True)
class SafetySummary:
    """Everything one strategy left behind: race cells and benchmark rounds together."""

    strategy: str
    race_cells: int = 0  # scenario x mode cells of the matrix
    race_runs: int = 0  # scenario runs in those cells (a cell holds `runs` of them)
    race_errors: int = 0  # cells whose verdict is error
    race_unexpected: int = 0
    scenarios_with_violations: int = 0
    bench_requests: int = 0
    violations: Counter[str] = field(default_factory=Counter)
    # The violations grouped into incidents; None when a run that left violations did not
    # count them (a results file older than incidents, a target's own invariants).
    incidents: Incidents | None = field(default_factory=Incidents)
    # Whether a run expected to hold left violations (False: every violation was an expected
    # race, such as the `none` canary or app_lock across processes).
    unexpected_violations: bool = False

    @property
    def violated(self) -> bool:
        """Whether any invariant broke anywhere."""
        return any(self.violations.values())

    @property
    def tested(self) -> bool:
        return self.race_cells > 0 or self.bench_requests > 0


@dataclass(frozen=True)
class RunSummary:
    """A run, digested: strategies in display order, benchmark per profile, safety per strategy."""

    results: Results
    strategies: list[str]
    bench: dict[str, dict[str, BenchSummary]]  # profile -> strategy -> summary
    safety: dict[str, SafetySummary]
    rounds: list[BenchResult]  # every benchmark round, errored ones too

    @property
    def profiles(self) -> list[str]:
        return list(self.bench)


def strategy_order(names: Iterable[str]) -> list[str]:
    """Before, After, then the registry's order, then the names the registry does not know
    (a target's variants, a class of one's own), in the order the run had them."""
    seen = list(dict.fromkeys(names))
    known = [n for n in (BEFORE, AFTER, *STRATEGY_NAMES) if n in seen]
    ordered = list(dict.fromkeys(known))
    return ordered + [n for n in seen if n not in ordered]


def roles(strategies: Sequence[str]) -> tuple[str | None, str | None]:
    """(Before, After) among the arms of a table: the write-up's none and for_update when
    there, else the first two arms as the run had them (a target's buggy and fixed builds)."""
    if BEFORE in strategies:
        return BEFORE, AFTER if AFTER in strategies else None
    first = strategies[0] if strategies else None
    return first, strategies[1] if len(strategies) > 1 else None


# A known-bad arm under a contention profile that leaves fewer payments wrong than this share
# of those that got two requests at once did not meet the race: the load did not exercise it.
EXERCISED_MIN_SHARE = 0.05


def exercise_notes(summary: RunSummary) -> list[str]:
    """Whether each contention bench exercised the race, said in words: a known-bad arm (one
    not expected to hold) must leave some of the payments that got two requests at once wrong;
    with no such arm, the bench cannot tell."""
    notes = []
    for profile, by_arm in summary.bench.items():
        contended = {
            arm: sum(r.contended_payments or 0 for r in b.rounds) for arm, b in by_arm.items()
        }
        if not any(contended.values()):
            continue
        canaries = [
            arm for arm, b in by_arm.items() if not all(expected_to_hold(r) for r in b.rounds)
        ]
        if not canaries:
            notes.append(
                f"{profile}: no arm is known to be bad, so this bench cannot tell whether its "
                "load met the race; bench a canary beside it (a build that must be caught)"
            )
        for arm in canaries:
            incidents = by_arm[arm].incidents
            wrong = incidents.payments if incidents is not None else 0
            share = wrong / contended[arm] if contended[arm] else 0.0
            if share < EXERCISED_MIN_SHARE:
                notes.append(
                    f"{profile}: the race was not exercised: {arm}, which must race, left "
                    f"{wrong:,} of {contended[arm]:,} payments that got two requests at once "
                    f"wrong ({share:.1%}); the service may serialise them before its database "
                    "(a connection pool smaller than the users?): try fewer users"
                )
    return notes


def expected_to_hold(row: BenchResult) -> bool:
    """Whether a benchmark round was expected to leave no violation: what racebench bench
    recorded when it ran the round, else holds() for its strategy and service processes."""
    if row.expected_safe is not None:
        return row.expected_safe
    return holds(row.strategy, row.workers)


def _safety(strategy: str, race: list[RaceResult], bench: list[BenchResult]) -> SafetySummary:
    violations: Counter[str] = Counter()
    for r in race:
        violations.update(r.violations)
    for b in bench:
        violations.update(b.violations)
    return SafetySummary(
        strategy=strategy,
        race_cells=len(race),
        race_runs=sum(r.runs for r in race),
        race_errors=sum(r.verdict == "error" for r in race),
        race_unexpected=sum(not r.passed for r in race),
        scenarios_with_violations=len({r.scenario for r in race if any(r.violations.values())}),
        bench_requests=sum(b.requests for b in bench),
        violations=+violations,
        unexpected_violations=any(r.expected == "safe" and any(r.violations.values()) for r in race)
        or any(expected_to_hold(b) and any(b.violations.values()) for b in bench),
        incidents=add_incidents(
            [r.incidents for r in race if any(r.violations.values())]
            + [b.incidents for b in bench if any(b.violations.values())]
        ),
    )


def summarize(results: Results) -> RunSummary:
    """Errored rounds count for safety (their violations are real) but not for the medians."""
    rounds = list(results.bench)
    strategies = strategy_order([r.strategy for r in results.race] + [b.strategy for b in rounds])
    grouped: dict[str, dict[str, list[BenchResult]]] = {}
    for b in rounds:
        if not b.errored:
            grouped.setdefault(b.profile, {}).setdefault(b.arm, []).append(b)
    bench = {
        profile: {s: BenchSummary.of(by_strategy[s]) for s in strategy_order(by_strategy)}
        for profile, by_strategy in grouped.items()
    }
    safety = {
        s: _safety(
            s,
            [r for r in results.race if r.strategy == s],
            [b for b in rounds if b.strategy == s],
        )
        for s in strategies
    }
    return RunSummary(
        results=results,
        strategies=strategies,
        bench=bench,
        safety=safety,
        rounds=rounds,
    )
