"""`racebench report NEW --baseline OLD`: the performance gate and the race gate, through the
real command line on real results files."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from racebench.cli import app
from racebench.reports.build import COMPARISON_FILE
from racebench.reports.gate import GateResult, Thresholds, compare, race_checks
from racebench.reports.matrix import build_matrix
from racebench.reports.summary import summarize
from racebench.results import Incidents, Results
from tests.reports.synthetic import bench_results, race_results, write_run

WIDE = {"COLUMNS": "200"}


def gate(new: Path, old: Path, thresholds: Thresholds) -> GateResult:
    """The performance gate on two results files, without drawing the report."""
    return compare(summarize(Results.read(new)), summarize(Results.read(old)), thresholds)


def report(new: Path, baseline: Path, *options: str) -> int:
    result = CliRunner().invoke(
        app, ["report", str(new), "--baseline", str(baseline), *options], env=WIDE
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code


def test_the_same_numbers_pass(tmp_path: Path) -> None:
    # `none` leaves violations in every round of both runs: the canary, not a failure.
    old = write_run(tmp_path / "old")
    new = write_run(tmp_path / "new")
    assert report(new, old) == 0
    comparison = (new / COMPARISON_FILE).read_text()
    assert "## Gate: PASSED" in comparison
    assert (
        "| throughput for_update (contention) | ok | medians 98.0 req/s -> 98.0 req/s; "
        "difference of means: "
        "no measurable difference (95% CI "
    ) in comparison


def test_a_large_throughput_drop_fails(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    new = write_run(tmp_path / "new", bench=bench_results({"for_update": (0.8, 1.0)}))
    assert report(new, old) == 1
    assert (
        "| throughput for_update (contention) | FAIL | medians 98.0 req/s -> 78.4 req/s; "
        "difference of means: slower by 20.0% ("
    ) in (new / COMPARISON_FILE).read_text()
    # The threshold is configurable: allowing a 25% drop lets the same run through.
    assert gate(new, old, Thresholds(max_throughput_drop_pct=25)).passed


def test_a_p99_increase_fails_past_its_threshold(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    new = write_run(tmp_path / "new", bench=bench_results({"for_update": (1.0, 1.5)}))
    result = gate(new, old, Thresholds())
    assert [c.name for c in result.failures] == ["p99 for_update (contention)"]
    assert result.failures[0].detail.startswith(
        "medians 350 ms -> 525 ms; difference of means: slower by 50.0% ("
    )
    assert gate(new, old, Thresholds(max_p99_increase_pct=60)).passed


def test_a_tiny_p99_increase_is_noise(tmp_path: Path) -> None:
    # +50% of a 300 ms p99 is 150 ms, far past the default floor: that fails ...
    old = write_run(tmp_path / "old")
    new = write_run(tmp_path / "new", bench=bench_results({"none": (1.0, 1.5)}))
    assert not gate(new, old, Thresholds()).passed
    # ... but with a floor above 150 ms, the same change counts as noise.
    assert gate(new, old, Thresholds(min_p99_increase_ms=200)).passed


def test_new_violations_on_a_safe_strategy_fail(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    bench = bench_results()
    bench[1].violations = {"DOUBLE_CAPTURE": 1, "DUPLICATE_RECEIPT": 1}  # for_update, round 1
    bench[1].incidents = Incidents(payments=1, captured_twice=1, invoices=1, at_risk={"INR": 500})
    new = write_run(tmp_path / "new", bench=bench)
    assert report(new, old) == 1
    comparison = (new / COMPARISON_FILE).read_text()
    assert (
        "| new violations for_update (contention) | FAIL | no violation -> 1 payment captured "
        "twice or more, 1 invoice affected, INR 5.00 at risk; evidence: DOUBLE_CAPTURE 1, "
        "DUPLICATE_RECEIPT 1 |" in comparison
    )


def test_race_violations_fail_even_when_performance_holds(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    race = race_results()
    broken = next(r for r in race if r.strategy == "optimistic")
    broken.verdict = "race_detected"
    broken.violations = {"INVOICE_DRIFT": 1}
    new = write_run(tmp_path / "new", race=race)
    assert report(new, old) == 1


def test_a_baseline_with_nothing_in_common_fails(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old", bench=[])
    new = write_run(tmp_path / "new")
    assert report(new, old) == 1
    assert "no strategy/profile benchmarked in both runs" in (new / COMPARISON_FILE).read_text()


def test_a_strategy_left_out_of_the_new_run_fails(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    new = write_run(
        tmp_path / "new", bench=[b for b in bench_results() if b.strategy != "optimistic"]
    )
    result = gate(new, old, Thresholds())
    assert [c.name for c in result.failures] == ["missing optimistic (contention)"]
    assert report(new, old) == 1
    assert (
        "| missing optimistic (contention) | FAIL | in the baseline, but not benchmarked in this "
        "run: nothing to compare |" in (new / COMPARISON_FILE).read_text()
    )
    # The other way round is not a regression: a new run may measure more than its baseline.
    assert gate(old, new, Thresholds()).passed


def test_a_profile_left_out_fails_for_each_of_its_strategies(tmp_path: Path) -> None:
    other = bench_results()
    for row in other:
        row.profile = "hot_row"
    old = write_run(tmp_path / "old", bench=bench_results() + other)
    new = write_run(tmp_path / "new")
    result = gate(new, old, Thresholds())
    assert [c.name for c in result.failures] == [
        "missing none (hot_row)",
        "missing for_update (hot_row)",
        "missing optimistic (hot_row)",
    ]


def test_a_strategy_whose_every_round_errored_is_missing_too(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old")
    bench = bench_results()
    for row in bench:
        if row.strategy == "optimistic":
            row.error = "Locust sent no requests (exit 1); see locust.log"
    new = write_run(tmp_path / "new", bench=bench)
    failures = gate(new, old, Thresholds()).failures
    assert [(c.name, c.detail) for c in failures] == [
        (
            "missing optimistic (contention)",
            "in the baseline, but every round errored in this run: nothing to compare",
        )
    ]


def test_the_race_gate_names_each_failure_once(tmp_path: Path) -> None:
    # A broken harness fails every cell with one error: the gate line says it once, with a count.
    race = race_results()
    for r in race:
        if r.strategy != "none":
            r.verdict, r.error = "error", "AttributeError: 'X' object has no attribute 'y'"
    race[1].error = "TimeoutError: the barrier never opened"  # simultaneous x for_update
    results = Results(run_id="broken", race=race)
    matrix = build_matrix(results.race)
    (check,) = race_checks(summarize(results), matrix)
    assert not check.passed
    assert check.detail == (
        "7 of 10 cells unexpected; simultaneous x for_update: error: TimeoutError: the barrier "
        "never opened; 6 cells (simultaneous x optimistic, interleaved x for_update, interleaved "
        "x optimistic, interleaved (http) x app_lock, hundred_way x for_update and 1 more): "
        "error: AttributeError: 'X' object has no attribute 'y'"
    )
