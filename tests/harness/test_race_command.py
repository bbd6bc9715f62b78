"""`racebench race` end to end: the table, --timeline, results.json, --json, JUnit, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from racebench.harness.cells import Cell, CellRuns, RunOutcome
from racebench.harness.invariants import CheckResult
from racebench.harness.race_display import write_junit
from racebench.race import run_race
from racebench.results import Results
from racebench.scenarios import SCENARIOS

# The command provisions a database and runs two cells in-process: seconds; the bound is for a
# machine shared with other jobs.
COMMAND_TIMEOUT_S = 120


def test_race_interleaved_prints_the_timeline_and_writes_results(tmp_path: Path) -> None:
    run_dir, copy, junit = tmp_path / "run", tmp_path / "copy.json", tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "racebench.cli", "race",
        "--scenario", "interleaved", "--strategy", "none,for_update", "--mode", "in_process",
        "--timeline", "--out", str(run_dir), "--json", str(copy), "--junit", str(junit),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env=os.environ
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in ("T0", "T1", "T4", "T5", "T6", "T7"):
        assert label in done.stdout
    assert "BLOCKS on Lock/" in done.stdout  # for_update's webhook waits for the row lock
    assert "lock waits (pg_stat_activity" in done.stdout

    results = Results.read(run_dir)
    assert json.loads(copy.read_text()) == json.loads((run_dir / "results.json").read_text())
    verdicts = {(r.scenario, r.strategy, r.mode): (r.expected, r.verdict) for r in results.race}
    assert verdicts == {
        ("interleaved", "none", "in_process"): ("race", "race_detected"),
        ("interleaved", "for_update", "in_process"): ("safe", "safe"),
    }
    caught = next(r for r in results.race if r.strategy == "none")
    assert caught.violations["DOUBLE_CAPTURE"] == 1
    assert any(row.kind == "lock_wait" for row in caught.timeline)

    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_a_safe_cell_with_a_violation_fails_with_its_seed_and_evidence(tmp_path: Path) -> None:
    cell = Cell(SCENARIOS["simultaneous"], "for_update", "in_process")
    evidence = {"DOUBLE_CAPTURE": [{"payment_id": 1, "captures": 2}]}
    broken = CheckResult(False, ["DOUBLE_CAPTURE"], evidence, {"DOUBLE_CAPTURE": 1})
    runs = CellRuns(cell, [RunOutcome(CheckResult(True, []), [], []), RunOutcome(broken, [], [])])
    runs.schedules = False
    runs.seeds = [7, 8]
    result = runs.result()
    assert (result.verdict, result.passed, result.seed) == ("race_detected", False, 8)

    path = tmp_path / "junit.xml"
    write_junit([runs], path)
    failure = ET.parse(path).getroot().find("testcase/failure")
    assert failure is not None and failure.text is not None
    assert "payment_id" in failure.text and "--seed 8 --no-schedule" in failure.text


def test_a_race_cell_that_is_not_caught_fails() -> None:
    cell = Cell(SCENARIOS["interleaved"], "none", "in_process")
    runs = CellRuns(cell, [RunOutcome(CheckResult(True, []), [], [])], seeds=[None])
    assert runs.result().verdict == "safe"
    assert not runs.result().passed


def test_race_exits_1_when_a_cell_is_not_as_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Claim that client_first catches `none`: it cannot (nothing runs concurrently).
    wrong = replace(SCENARIOS["client_first"], catches_races=True)
    monkeypatch.setitem(SCENARIOS, "client_first", wrong)
    code = run_race(strategies="none", scenarios="client_first", out=tmp_path, repeat=2, seed=5)
    assert code == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "caught in 0/2 runs" in err
    assert "--seed 5" in err  # the first run that missed, replayable
    assert Results.read(tmp_path).race[0].verdict == "safe"
