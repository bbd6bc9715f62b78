"""racebench explore's searches in the report: the table with each guarantee, the gate, and the
failing schedule drawn as the SQL each request ran."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from racebench.cli import app
from racebench.reports.explore import EXPLORE_FILE
from racebench.results import ExploreFailure, ExploreResult, Results
from tests.reports.synthetic import event

HELD = "all 93 schedules with at most 2 preemptions explored: 0 violations"
FOUND = (
    "4 schedules with at most 2 preemptions explored, fewest preemptions first, stopped at "
    "the first violation: 1 violation"
)


def _entry(variant: str, *, passed: bool, failure: ExploreFailure | None = None) -> ExploreResult:
    return ExploreResult(
        target="shop",
        variant=variant,
        scenario="split_invoice",
        search="exhaustive",
        preemption_bound=2,
        schedules=4 if failure else 93,
        complete=failure is None,
        held=3 if failure else 93,
        violations=1 if failure else 0,
        errors=0,
        artifacts=0,
        expected="race" if failure else "safe",
        passed=passed,
        guarantee=FOUND if failure else HELD,
        seconds=0.5 if failure else 11.7,
        failure=failure,
    )


FAILURE = ExploreFailure(
    schedule_id="de46a425b8b6",
    choices=["first", "first", "second", "second", "first"],
    preemptions=1,
    decisions=5,
    schedule_file="schedules/split_invoice-reconcile_skew-de46a425b8b6.json",
    violations={"FALSE_DISPUTE": 1},
    result="RESULT: FALSE_DISPUTE x1 (invoice_id=4, paid_paise=100000)",
    timeline=[
        event(0.0, "first", "sends POST /checkout/razorpay/callback", "send"),
        event(1.0, "second", "sends webhook payment.captured", "send"),
        event(2.0, "first", "SELECT shop_invoice.paid_paise ... -> SELECT 1", "arrive", "1"),
        event(3.0, "second", "COMMIT -> COMMIT", "release", "2*"),
        event(4.0, "first", "SELECT (SELECT coalesce(sum(...))) -> SELECT 1", "arrive", "3"),
        event(9.0, "-", "RESULT: FALSE_DISPUTE x1 (invoice_id=4, paid_paise=100000)", "note"),
    ],
)


def test_each_search_its_guarantee_and_the_failing_schedule(tmp_path: Path) -> None:
    found = _entry("reconcile_skew", passed=True, failure=FAILURE)
    Results(run_id="r", explore=[found, _entry("reconciled", passed=True)]).write(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = (tmp_path / EXPLORE_FILE).read_text()
    assert "| split_invoice x reconciled |" in table and HELD in table
    assert "schedule de46a425b8b6: 1 preemption(s); RESULT: FALSE_DISPUTE x1" in table
    html = (tmp_path / "report.html").read_text()
    assert "Explore: every interleaving within the preemption bound" in html
    assert "explore split_invoice x reconcile_skew: schedule de46a425b8b6" in html
    assert "data:image/png;base64," in html
    assert "racebench explore --replay schedules/split_invoice-reconcile_skew-" in html


def test_a_search_not_as_expected_fails_the_gate(tmp_path: Path) -> None:
    Results(run_id="r", explore=[_entry("reconciled", passed=False)]).write(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "FAIL explore split_invoice x reconciled" in " ".join(result.output.split())
