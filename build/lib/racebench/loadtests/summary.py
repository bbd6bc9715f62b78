"""Medians and spread of alternating rounds, and each strategy against the baseline.

Per-round rows are the data (`round` 1..R). For each strategy one more row holds the medians
(`round` 0, `extra["aggregate"] == "median"`), with the spread (min, max, relative range) of the
headline figures and, for every strategy after the first, the change against the first one
(the baseline) computed round by round: strategy A and B of one round ran back to back on the
same machine state, so their ratio is steadier than a ratio of medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from racebench.results import BenchResult, LatencyMs

AGGREGATE_ROUND = 0  # the `round` of a median row; measured rounds count from 1
SPREAD_METRICS = ("throughput_rps", "mean", "p50", "p99", "p999")


def _metric(row: BenchResult, name: str) -> float:
    return row.throughput_rps if name == "throughput_rps" else float(getattr(row.latency_ms, name))


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, max, median and the relative range (max - min) / median."""
    middle = statistics.median(values)
    low, high = min(values), max(values)
    return {
        "min": round(low, 3),
        "max": round(high, 3),
        "median": round(middle, 3),
        "rel_range": round((high - low) / middle, 4) if middle else 0.0,
    }


def paired_change(
    rows: Sequence[BenchResult], baseline: Sequence[BenchResult]
) -> dict[str, float] | None:
    """Median over rounds of (this / baseline - 1) in throughput and CPU per request, and of
    (this - baseline) in p99 and mean latency."""
    by_round = {b.round: b for b in baseline}
    pairs = [(r, by_round[r.round]) for r in rows if r.round in by_round]
    pairs = [(r, b) for r, b in pairs if b.throughput_rps > 0]
    if not pairs:
        return None
    change: dict[str, float] = {
        "throughput_change_pct": round(
            statistics.median(100.0 * (r.throughput_rps / b.throughput_rps - 1) for r, b in pairs),
            2,
        ),
        "p99_delta_ms": round(
            statistics.median(r.latency_ms.p99 - b.latency_ms.p99 for r, b in pairs), 3
        ),
        "mean_delta_ms": round(
            statistics.median(r.latency_ms.mean - b.latency_ms.mean for r, b in pairs), 3
        ),
        "rounds": len(pairs),
    }
    costs = [
        (r.extra["cpu_ms_per_request"], b.extra["cpu_ms_per_request"])
        for r, b in pairs
        if r.extra.get("cpu_ms_per_request") and b.extra.get("cpu_ms_per_request")
    ]
    if costs:
        change["cpu_per_request_change_pct"] = round(
            statistics.median(100.0 * (r / b - 1) for r, b in costs), 2
        )
    return change


def median_row(rows: Sequence[BenchResult], baseline: Sequence[BenchResult] | None) -> BenchResult:
    """One row of medians for the rounds of one strategy (violations are summed, not medians:
    every violation any round left behind counts)."""
    first = rows[0]
    latency = LatencyMs(
        **{
            f.name: round(statistics.median(getattr(r.latency_ms, f.name) for r in rows), 3)
            for f in fields(LatencyMs)
        }
    )
    violations: dict[str, int] = {}
    for row in rows:
        for code, count in row.violations.items():
            violations[code] = violations.get(code, 0) + count
    extra: dict[str, Any] = {
        "aggregate": "median",
        "rounds": [r.round for r in rows],
        "spread": {m: spread([_metric(r, m) for r in rows]) for m in SPREAD_METRICS},
        "busy": sum(int(r.extra.get("busy", 0)) for r in rows),
        "requests_per_round": [r.requests for r in rows],
    }
    costs = [r.extra["cpu_ms_per_request"] for r in rows if r.extra.get("cpu_ms_per_request")]
    if costs:
        extra["cpu_ms_per_request"] = spread(costs)
    if baseline is not None:
        change = paired_change(rows, baseline)
        if change is not None:
            extra["vs_baseline"] = {"strategy": baseline[0].strategy, **change}
    return BenchResult(
        strategy=first.strategy,
        profile=first.profile,
        round=AGGREGATE_ROUND,
        users=first.users,
        rate=first.rate,
        duration_s=round(statistics.median(r.duration_s for r in rows), 3),
        requests=sum(r.requests for r in rows),
        failures=sum(r.failures for r in rows),
        throughput_rps=round(statistics.median(r.throughput_rps for r in rows), 1),
        latency_ms=latency,
        violations=violations,
        extra=extra,
    )


def summarize(rows: Sequence[BenchResult]) -> list[BenchResult]:
    """A median row per strategy, in the order strategies first appear; the first is the
    baseline of the others."""
    order: list[str] = []
    by_strategy: dict[str, list[BenchResult]] = {}
    for row in rows:
        if row.round == AGGREGATE_ROUND or "error" in row.extra:
            continue
        if row.strategy not in by_strategy:
            order.append(row.strategy)
            by_strategy[row.strategy] = []
        by_strategy[row.strategy].append(row)
    if not order:
        return []
    baseline = by_strategy[order[0]]
    return [median_row(by_strategy[s], None if s == order[0] else baseline) for s in order]
