"""What a run measured, per strategy: medians and spread of the benchmark rounds, and every
violation observed by the race matrix and the benchmark. Pure computation on results.json."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from racebench.reference_service.strategies import STRATEGIES, STRATEGY_NAMES, Safety
from racebench.results import BenchResult, RaceResult, Results

# The `round` of the median rows `racebench bench` appends; measured rounds count from 1.
AGGREGATE_ROUND = 0
BEFORE = "none"  # the documents' BEFORE
AFTER = "for_update"  # the documents' AFTER


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
    violations: Counter[str]

    @classmethod
    def of(cls, rounds: list[BenchResult]) -> BenchSummary:
        ordered = sorted(rounds, key=lambda r: r.round)

        def spread(get: Callable[[BenchResult], float]) -> Spread:
            return Spread.of(get(r) for r in ordered)

        violations: Counter[str] = Counter()
        for r in ordered:
            violations.update(r.violations)
        return cls(
            strategy=ordered[0].strategy,
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
            violations=+violations,
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

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

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
    rounds: list[BenchResult]  # the measured benchmark rounds (no median rows)

    @property
    def profiles(self) -> list[str]:
        return list(self.bench)


def strategy_order(names: Iterable[str]) -> list[str]:
    """Before, After, then the registry's order, then strategies the registry does not know."""
    seen = set(names)
    known = [n for n in (BEFORE, AFTER, *STRATEGY_NAMES) if n in seen]
    ordered = list(dict.fromkeys(known))
    return ordered + sorted(seen - set(ordered))


def promised_safety(strategy: str) -> Safety:
    """What the registry says a strategy promises; a strategy it does not know must be safe."""
    cls = STRATEGIES.get(strategy)
    return Safety.SAFE if cls is None else Safety(cls.safety)


def is_aggregate(row: BenchResult) -> bool:
    """A median row that `racebench bench` adds after the rounds (round 0)."""
    return row.round == AGGREGATE_ROUND or "aggregate" in row.extra


def is_errored(row: BenchResult) -> bool:
    return "error" in row.extra


def measured_rounds(bench: list[BenchResult]) -> list[BenchResult]:
    """The per-round rows; for a strategy and profile that has none, its aggregate rows."""
    rounds = [b for b in bench if not is_aggregate(b)]
    have = {(b.profile, b.strategy) for b in rounds}
    return rounds + [b for b in bench if is_aggregate(b) and (b.profile, b.strategy) not in have]


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
    )


def summarize(results: Results) -> RunSummary:
    """Errored rounds count for safety (their violations are real) but not for the medians."""
    rounds = measured_rounds(results.bench)
    strategies = strategy_order([r.strategy for r in results.race] + [b.strategy for b in rounds])
    grouped: dict[str, dict[str, list[BenchResult]]] = {}
    for b in rounds:
        if not is_errored(b):
            grouped.setdefault(b.profile, {}).setdefault(b.strategy, []).append(b)
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
