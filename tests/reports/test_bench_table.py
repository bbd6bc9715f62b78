"""What `racebench bench` prints at its end, computed by racebench.reports from the rounds:
medians, their spread, and the change against the first strategy round by round."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from racebench.reports.bench_table import ceiling_lines, strategy_lines, summary_table
from racebench.results import BenchResult, LatencyMs, Results


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
        busy=1,
        cpu_ms_per_request=cost,
    )


ROWS = [
    _row("none", 1, 100.0, 10.0, 1.0, DOUBLE_CAPTURE=2),
    _row("for_update", 1, 98.0, 11.0, 1.01),
    _row("none", 2, 200.0, 20.0, 2.0),
    _row("for_update", 2, 190.0, 20.5, 2.2),
    _row("none", 3, 150.0, 15.0, 1.0, DOUBLE_CAPTURE=1),
    _row("for_update", 3, 150.0, 17.0, 1.05),
]


def test_medians_spread_and_paired_change_against_the_first_strategy() -> None:
    none, for_update = strategy_lines(Results(run_id="r", bench=ROWS))

    assert none.summary.strategy == "none" and none.versus is None
    assert none.summary.throughput_rps.median == 150.0
    assert none.summary.violations == {"DOUBLE_CAPTURE": 3}  # summed: every violation counts
    spread = none.summary.throughput_rps
    assert (spread.low, spread.high, spread.median, spread.rounds) == (100.0, 200.0, 150.0, 3)
    assert spread.rel_range == pytest.approx(0.6667, abs=1e-4)
    assert none.summary.busy == 3
    assert for_update.summary.throughput_rps.median == 150.0
    assert for_update.summary.p99_ms.median == 17.0
    # Per round: -2 %, -5 %, 0 % -> median -2 %; p99: +1, +0.5, +2 -> median +1;
    # CPU per request: +1 %, +10 %, +5 % -> median +5 %.
    versus = for_update.versus
    assert versus is not None
    assert (versus.baseline, versus.rounds) == ("none", 3)
    assert versus.throughput_change_pct == pytest.approx(-2.0)
    assert versus.p99_delta_ms == pytest.approx(1.0)
    assert versus.mean_delta_ms == pytest.approx(0.333, abs=1e-3)
    assert versus.cpu_per_request_change_pct == pytest.approx(5.0)
    assert for_update.summary.cpu_ms_per_request is not None
    assert for_update.summary.cpu_ms_per_request.median == 1.05


def test_the_first_strategy_run_is_the_baseline_and_errored_rounds_are_left_out() -> None:
    errored = _row("optimistic", 1, 0.0, 0.0)
    errored.error = "Locust sent no requests (exit 1); see locust.log"
    rows = [r for r in ROWS if r.strategy == "for_update"] + [
        r for r in ROWS if r.strategy == "none"
    ] + [errored]  # fmt: skip
    lines = strategy_lines(Results(run_id="r", bench=rows))
    assert [(line.summary.strategy, line.versus is None) for line in lines] == [
        ("for_update", True),
        ("none", False),
    ]


def test_the_table_and_the_ceiling_lines() -> None:
    results = Results(run_id="r", bench=ROWS)
    results.environment["ceiling"] = {"pgbench": {"tps": 300.0, "clients": 16, "duration_s": 10}}
    out = io.StringIO()
    Console(file=out, width=200).print(summary_table(results))
    text = out.getvalue()
    assert "none (3r)" in text and "for_update (3r)" in text
    assert "66.7%" in text  # none's range: (200 - 100) / 150
    assert "-2.3% ±6.3" in text and "1.050 (+5.3% ±11.2)" in text  # paired: mean of per-round
    assert ceiling_lines(results) == [
        "ceiling: pgbench 300 tps for the capture transaction (16 clients, 10 s)",
        "  none: 150 req/s (median) = 50.0% of pgbench",
        "  for_update: 150 req/s (median) = 50.0% of pgbench",
    ]


def test_each_round_is_printed_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A round is printed as it finishes (with its ledger); the summary after the rounds
    aggregates them and lists again only a round that broke something (it printed each round
    a second time, in the demo too)."""
    from racebench.loadtests import display
    from racebench.reports import bench_table

    live, summary = io.StringIO(), io.StringIO()
    monkeypatch.setattr(display, "console", Console(file=live, width=400))
    monkeypatch.setattr(bench_table, "console", Console(file=summary, width=400))
    rows = [r.model_copy(update={"acked_captures": 10}) for r in ROWS]
    rows[3] = rows[3].model_copy(update={"lost_captures": 2, "server_errors": {"500": 1}})
    for row in rows:
        display.console.print(display.round_line(row), highlight=False)  # RichObserver.finished
    bench_table.print_bench_summary(Results(run_id="r", bench=rows), tmp_path)
    for row in rows:
        assert live.getvalue().count(f"{row.strategy:<18} round {row.round}:") == 1
    assert "lost 2/10 acked captures" in live.getvalue()
    text = summary.getvalue()
    assert "6 round(s): 5xx: 1 x 500; 503 without Retry-After: 0" in text
    assert "lost: 2 of 60 acked captures" in text
    assert [line.strip() for line in text.splitlines() if "round 2" in line] == [
        "for_update round 2 broke: 5xx 500; 2 acked captures lost"
    ]
    assert "round 1" not in text and "round 3" not in text
