"""Medians of alternating rounds, their spread, and the change against the baseline."""

from __future__ import annotations

import pytest

from racebench.loadtests.bench import exit_code, parse_duration, parse_strategies
from racebench.loadtests.summary import AGGREGATE_ROUND, summarize
from racebench.results import BenchResult, LatencyMs


def _row(
    strategy: str, round_no: int, rps: float, p99: float, cost: float = 1.0, **violations: int
) -> BenchResult:
    return BenchResult(
        strategy=strategy,
        profile="verify",
        round=round_no,
        users=8,
        rate=None,
        duration_s=10.0,
        requests=int(rps * 10),
        failures=0,
        throughput_rps=rps,
        latency_ms=LatencyMs(mean=p99 / 3, p50=p99 / 4, p90=p99 / 2, p99=p99, p999=p99, max=p99),
        violations=violations,
        extra={"busy": 1, "cpu_ms_per_request": cost},
    )


def test_medians_spread_and_paired_change_against_the_first_strategy() -> None:
    rows = [
        _row("none", 1, 100.0, 10.0, 1.0, DOUBLE_CAPTURE=2),
        _row("for_update", 1, 98.0, 11.0, 1.01),
        _row("none", 2, 200.0, 20.0, 2.0),
        _row("for_update", 2, 190.0, 20.5, 2.2),
        _row("none", 3, 150.0, 15.0, 1.0, DOUBLE_CAPTURE=1),
        _row("for_update", 3, 150.0, 17.0, 1.05),
    ]

    none, for_update = summarize(rows)

    assert (none.strategy, none.round) == ("none", AGGREGATE_ROUND)
    assert none.throughput_rps == 150.0
    assert none.violations == {"DOUBLE_CAPTURE": 3}  # summed: every violation counts
    assert none.extra["spread"]["throughput_rps"] == {
        "min": 100.0, "max": 200.0, "median": 150.0, "rel_range": 0.6667,
    }  # fmt: skip
    assert none.extra["busy"] == 3
    assert "vs_baseline" not in none.extra
    assert for_update.throughput_rps == 150.0
    assert for_update.latency_ms.p99 == 17.0
    # Per round: -2 %, -5 %, 0 % -> median -2 %; p99: +1, +0.5, +2 -> median +1;
    # CPU per request: +1 %, +10 %, +5 % -> median +5 %.
    assert for_update.extra["vs_baseline"] == {
        "strategy": "none", "throughput_change_pct": -2.0, "p99_delta_ms": 1.0,
        "mean_delta_ms": 0.333, "rounds": 3, "cpu_per_request_change_pct": 5.0,
    }  # fmt: skip
    assert for_update.extra["cpu_ms_per_request"]["median"] == 1.05


def test_only_a_strategy_that_promises_safety_fails_the_run_with_violations() -> None:
    assert exit_code([_row("none", 1, 1.0, 1.0, DOUBLE_CAPTURE=5)], workers=1) == 0
    assert exit_code([_row("for_update", 1, 1.0, 1.0, DOUBLE_CAPTURE=1)], workers=1) == 1
    assert exit_code([_row("app_lock", 1, 1.0, 1.0, DOUBLE_CAPTURE=1)], workers=1) == 1
    assert exit_code([_row("app_lock", 1, 1.0, 1.0, DOUBLE_CAPTURE=1)], workers=2) == 0


def test_durations_and_strategy_lists_parse_or_say_what_is_wrong() -> None:
    assert parse_duration("30s") == 30.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("2m") == 120.0
    assert parse_duration("45") == 45.0
    assert parse_strategies("none, for_update") == ["none", "for_update"]
    assert len(parse_strategies("all")) == 7
    with pytest.raises(ValueError, match="30x"):
        parse_duration("30x")
    with pytest.raises(ValueError, match="nope"):
        parse_strategies("none,nope")
