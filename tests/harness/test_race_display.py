"""What `racebench race` shows: one progress line per finished cell in a CI log, the table's
worker count, and timelines whose evidence is never cut."""

from __future__ import annotations

import io

from rich.console import Console

from racebench.harness.cells import Cell, CellRuns, RunOutcome
from racebench.harness.invariants import CheckResult
from racebench.harness.race_display import RaceProgress, matrix_table
from racebench.harness.timeline import MAX_COLUMN_WIDTH, render
from racebench.harness.white_box import HTTP_WORKERS
from racebench.results import TimelineEntry, TimelineEvent
from racebench.scenarios import SCENARIOS

CAUGHT = CheckResult(False, ["DOUBLE_CAPTURE"], {"DOUBLE_CAPTURE": [{}]}, {"DOUBLE_CAPTURE": 1})


def _runs(strategy: str, check: CheckResult, errors: list[str] | None = None) -> CellRuns:
    cell = Cell(SCENARIOS["simultaneous"], strategy, "in_process")
    runs = CellRuns(cell, [RunOutcome(check, [], errors or [])], [None])
    runs.duration_ms = 1234.0
    return runs


def test_a_log_gets_one_line_per_finished_cell() -> None:
    log = io.StringIO()
    console = Console(file=log, force_terminal=False, width=200)
    with RaceProgress(3, 1, console) as progress:
        for runs in (
            _runs("none", CAUGHT),
            _runs("for_update", CheckResult(True, [])),
            _runs("advisory", CheckResult(True, []), ["the schedule did not happen"]),
        ):
            progress.started(runs.cell.title, 1, 3)
            progress.advanced(1, 1)
            progress.finished(runs)
    assert log.getvalue().splitlines() == [
        "[1/3] simultaneous none in_process: race_detected ok, 1 run: 1 caught, 1.2 s",
        "[2/3] simultaneous for_update in_process: safe ok, 1 run: 1 held, 1.2 s",
        "[3/3] simultaneous advisory in_process: error FAIL (expected safe), 1 run: 1 broke, 1.2 s",
    ]


def test_the_table_names_the_http_worker_count() -> None:
    assert f"http: {HTTP_WORKERS} worker processes" in str(matrix_table([]).title)


def test_long_evidence_continues_on_the_next_line_instead_of_being_cut() -> None:
    evidence = (
        "BLOCKS on Lock/transactionid: UPDATE payments waits for client's row lock "
        "(held by pid 1234567, 7654321)"
    )
    assert len(evidence) > MAX_COLUMN_WIDTH - 10
    rows: list[TimelineEntry] = [
        TimelineEvent(t_ms=0.0, actor="client", what="reads payment", kind="arrive", label="T0"),
        TimelineEvent(t_ms=1.0, actor="webhook", what=evidence[7:], kind="blocked", label="T1"),
    ]
    text = render(rows, "title")
    assert "1234567, 7654321)" in text
    words = " ".join(line.split("|")[-1].strip() for line in text.splitlines()[4:])
    assert evidence in words
