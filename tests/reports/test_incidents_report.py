"""The Race Condition Risk headline on real data: a real `none` race leaves double captures,
and table.md, report.html and the terminal count each payment once, with the per-invariant
counts after the headline as evidence, never added up into it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from racebench.harness.invariants import money
from racebench.race import run_race
from racebench.reports.build import HTML_FILE, TABLE_FILE, run_report
from racebench.reports.tables import ROW_RISK
from racebench.results import RESULTS_FILE, Results

REPEAT = 3


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> tuple[Path, str]:
    """simultaneous and split_invoice x {none, for_update}, in process, reported once."""
    run_dir = tmp_path_factory.mktemp("incidents") / "run"
    code = run_race(
        strategies="none,for_update",
        scenarios="simultaneous,split_invoice",
        repeat=REPEAT,
        seed=1,
        json_path=None,
        out=run_dir,
        junit=None,
        show_timeline=False,
        mode="in_process",
        database_url=database_url,
        schedules=True,
    )
    assert code == 0
    out = io.StringIO()
    terminal = Console(file=out, width=400, color_system=None)
    assert run_report(run_dir, announce=False, console=terminal) == 0
    return run_dir, out.getvalue()


def test_results_json_keeps_the_codes_and_adds_the_incidents(raced: tuple[Path, str]) -> None:
    run_dir, _ = raced
    raw = json.loads((run_dir / RESULTS_FILE).read_text())
    none = {r["scenario"]: r for r in raw["race"] if r["strategy"] == "none"}
    simultaneous = none["simultaneous"]
    # Every run doubled one payment: each code counts it once per run.
    assert simultaneous["violations"]["DOUBLE_CAPTURE"] == REPEAT
    assert simultaneous["violations"]["DUPLICATE_RECEIPT"] == REPEAT
    assert simultaneous["incidents"]["payments"] == REPEAT
    assert simultaneous["incidents"]["captured_twice"] == REPEAT
    assert simultaneous["incidents"]["invoices"] == REPEAT
    assert none["split_invoice"]["incidents"]["payments"] == 0
    assert none["split_invoice"]["incidents"]["invoices"] == REPEAT
    assert Results.read(run_dir).race[0].incidents is not None


def _risk_cells(table_md: str) -> list[str]:
    row = next(line for line in table_md.splitlines() if line.startswith(f"| {ROW_RISK} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][1:]


def test_table_md_heads_the_risk_row_with_incidents(raced: tuple[Path, str]) -> None:
    run_dir, _ = raced
    results = Results.read(run_dir)
    doubled = next(
        r.incidents for r in results.race if (r.scenario, r.strategy) == ("simultaneous", "none")
    )
    assert doubled is not None and len(doubled.at_risk) == 1
    [(currency, minor)] = doubled.at_risk.items()
    total_codes = sum(
        n for r in results.race if r.strategy == "none" for n in r.violations.values()
    )
    none, for_update = _risk_cells((run_dir / TABLE_FILE).read_text())
    headline, evidence = none.split("; evidence: ")
    assert headline == (
        f"HIGH: {REPEAT} payments captured twice or more, {2 * REPEAT} invoices affected, "
        f"{money(currency, minor)} at risk (expected race)"
    )
    assert f"DOUBLE_CAPTURE {REPEAT}" in evidence
    assert f"INVOICE_DRIFT {2 * REPEAT}" in evidence
    # The codes added up are no headline.
    assert f"{total_codes:,}" not in re.findall(r"\d[\d,]*", headline)
    assert for_update.startswith("NONE; no violation in ")


def test_the_page_and_the_terminal_say_the_same(raced: tuple[Path, str]) -> None:
    run_dir, terminal = raced
    html = (run_dir / HTML_FILE).read_text(encoding="utf-8")
    headline = f"HIGH: {REPEAT} payments captured twice or more, {2 * REPEAT} invoices affected"
    assert headline in html
    assert headline in re.sub(r"\s+", " ", terminal)
    assert "evidence: INVOICE_DRIFT" in html
