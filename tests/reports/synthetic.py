"""Synthetic, valid results.json files (racebench/results.py) for the report tests.

The benchmark numbers are the write-up's own: Before 150 ms / 300 ms / 100 req/s, After
160 ms / 350 ms / 98 req/s, each the median of three alternating rounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from racebench.results import (
    BenchResult,
    EventKind,
    LatencyMs,
    LockWait,
    RaceResult,
    Results,
    TimelineEntry,
    TimelineEvent,
)

# (mean, p99, throughput) per round; the medians are the write-up's figures.
ROUNDS: dict[str, list[tuple[float, float, float]]] = {
    "none": [(150.0, 300.0, 100.0), (149.0, 290.0, 102.0), (152.0, 310.0, 98.0)],
    "for_update": [(160.0, 350.0, 98.0), (158.0, 340.0, 97.0), (161.0, 355.0, 99.0)],
    "optimistic": [(155.0, 320.0, 99.0), (156.0, 322.0, 99.5), (154.0, 318.0, 98.5)],
}
NONE_VIOLATIONS_PER_ROUND = {"DOUBLE_CAPTURE": 4, "DUPLICATE_RECEIPT": 4}


def event(t_ms: float, actor: str, what: str, kind: EventKind, label: str = "") -> TimelineEvent:
    return TimelineEvent(t_ms=t_ms, actor=actor, what=what, kind=kind, label=label)


UPDATE = "UPDATE status = captured; UPDATE invoice"


def interleaved_timeline(locking: bool) -> list[TimelineEntry]:
    """The write-up's T0-T7, as harness/timeline.py writes it (events and one lock wait)."""
    rows = [
        event(0.0, "-", "schedule: the write-up's T0-T7", "note"),
        event(0.4, "client", "sends POST /payments/verify", "send"),
        event(0.5, "webhook", "sends POST /webhooks/razorpay", "send"),
        event(2.1, "client", "reads payment: status = pending", "arrive", "T0"),
    ]
    if not locking:
        return [
            *rows,
            event(3.0, "webhook", "reads payment: status = pending", "arrive", "T1"),
            event(5.0, "client", UPDATE, "arrive", "T4"),
            event(6.0, "webhook", UPDATE, "arrive", "T5"),
            event(8.0, "client", "answers 200 captured", "answer", "T6"),
            event(9.0, "webhook", "answers 200 processed", "answer", "T7"),
        ]
    lock_wait = LockWait(
        actor="webhook",
        pid=4242,
        start_ms=3.0,
        end_ms=44.2,
        wait_event="Lock/transactionid",
        query="SELECT ... FOR UPDATE",
        blocked_by=[4241],
    )
    return [
        *rows,
        event(3.0, "webhook", "BLOCKS on Lock/transactionid", "blocked", "T1"),
        lock_wait,
        event(20.0, "client", UPDATE, "arrive", "T4"),
        event(44.0, "client", "answers 200 captured", "answer", "T6"),
        event(46.0, "webhook", "answers 200 processed (already captured)", "answer", "T7"),
    ]


def race_results() -> list[RaceResult]:
    results = []
    for scenario in ("simultaneous", "interleaved", "hundred_way"):
        for strategy in ("none", "for_update", "optimistic"):
            caught = strategy == "none"
            results.append(
                RaceResult(
                    scenario=scenario,
                    strategy=strategy,
                    mode="in_process",
                    runs=1,
                    expected="race" if caught else "safe",
                    verdict="race_detected" if caught else "safe",
                    violations={"DOUBLE_CAPTURE": 1, "DUPLICATE_ALLOCATION": 1} if caught else {},
                    duration_ms=50.0,
                    timeline=interleaved_timeline(strategy != "none")
                    if scenario == "interleaved"
                    else [],
                )
            )
    results.append(
        RaceResult(
            scenario="interleaved",
            strategy="app_lock",
            mode="http",
            runs=1,
            expected="race",
            verdict="race_detected",
            violations={"DOUBLE_CAPTURE": 1},
            duration_ms=80.0,
        )
    )
    return results


def bench_row(
    strategy: str, round_no: int, mean: float, p99: float, rps: float, **fields: Any
) -> BenchResult:
    violations = NONE_VIOLATIONS_PER_ROUND if strategy == "none" else {}
    return BenchResult(
        strategy=strategy,
        profile="contention",
        round=round_no,
        users=16,
        rate=None,
        duration_s=10.0,
        requests=int(rps * 10),
        failures=0,
        throughput_rps=rps,
        latency_ms=LatencyMs(
            mean=mean, p50=mean * 0.9, p90=mean * 1.5, p99=p99, p999=p99 * 1.2, max=p99 * 1.5
        ),
        violations=dict(violations),
        workers=1,
        expected_safe=strategy != "none",
        **fields,
    )


def bench_results(scale: dict[str, tuple[float, float]] | None = None) -> list[BenchResult]:
    """Three alternating rounds per strategy, as racebench bench writes them.
    `scale`: strategy -> (throughput factor, p99 factor), to make a slower run."""
    rows = []
    for round_no in range(1, 4):
        for strategy, rounds in ROUNDS.items():
            mean, p99, rps = rounds[round_no - 1]
            rps_factor, p99_factor = (scale or {}).get(strategy, (1.0, 1.0))
            rows.append(bench_row(strategy, round_no, mean, p99 * p99_factor, rps * rps_factor))
    return rows


def write_run(
    folder: Path,
    *,
    race: list[RaceResult] | None = None,
    bench: list[BenchResult] | None = None,
    run_id: str = "20260101T000000Z-test-000000",
) -> Path:
    results = Results(
        run_id=run_id,
        race=race_results() if race is None else race,
        bench=bench_results() if bench is None else bench,
    )
    results.write(folder)
    return folder
