"""A target whose invariant codes are all its own: every place a violation shows names it as
the target file did (the terminal's FAIL, JUnit, results.json, matrix.md, the plugin), and no
code is looked up anywhere else (it used to crash with a KeyError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.pytest_plugin import TargetRacer
from tests.targets.shop import OWN_CODES, shop_file

NAME = "payment captured twice (two receipts)"


@pytest.fixture
def own(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)
    path = shop_file(tmp_path, codes=OWN_CODES, ledger=False)
    # The read-then-save build declared as one that must hold: its catch is a failing cell.
    text = path.read_text()
    old = 'buggy = { caught_by = "races", summary'
    assert old in text
    path.write_text(text.replace(old, "buggy = { summary"))
    return path


def test_race_fails_with_the_targets_own_names_and_no_traceback(own: Path, tmp_path: Path) -> None:
    out, junit = tmp_path / "run", tmp_path / "junit.xml"
    args = ["race", "--target", str(own), "--strategy", "buggy", "--scenario", "simultaneous"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--junit", str(junit)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "FAIL simultaneous x buggy" in result.output
    assert f"{NAME} (DOUBLE_LEDGER)" in result.output
    assert f"{NAME} (DOUBLE_LEDGER)" in junit.read_text()
    [entry] = json.loads((out / "results.json").read_text())["race"]
    assert entry["verdict"] == "race_detected"
    assert entry["invariants"]["DOUBLE_LEDGER"]["name"] == NAME

    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 1, report.output  # the race gate: a build that must hold broke
    matrix = (out / "matrix.md").read_text()
    assert f"DOUBLE_LEDGER: {NAME}" in matrix
    assert f"DOUBLE_LEDGER: {NAME}" in (out / "report.html").read_text()


async def test_the_plugin_names_them_too(racebench_target: TargetRacer, own: Path) -> None:
    run = await racebench_target(str(own), "simultaneous", variant="buggy")
    assert run.caught == 1
    assert f"{NAME} (DOUBLE_LEDGER)" in run.message()
