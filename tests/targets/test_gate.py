"""The target gate cannot lie: a barrier on the wrong table is found by `target check` and makes
every concurrent run an error (never `safe`), a canary build must be caught or the gate fails,
and a bug only a fault reaches is caught by the fault scenarios, on examples/shop."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.harness.target import file as target_file
from racebench.harness.target.matrix import race_target_scenario
from racebench.pytest_plugin import TargetRacer
from racebench.results import Results
from racebench.scenarios import SCENARIOS
from tests.targets.shop import MISPLACED, SHOP, shop_file

RIGHT_TABLES = 'barrier_tables = ["shop_invoice", "shop_payment", "shop_receipt"]'


@pytest.fixture(autouse=True)
def shop_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)


@pytest.fixture
def misplaced(tmp_path: Path) -> Path:
    return shop_file(tmp_path, barrier=MISPLACED)


def test_check_fails_a_misplaced_barrier_and_names_the_right_tables(misplaced: Path) -> None:
    result = CliRunner().invoke(app, ["target", "check", str(misplaced)])
    assert result.exit_code == 1, result.output
    assert "FAIL barrier_tables" in result.output
    assert RIGHT_TABLES in result.output
    assert "FAIL forced race: the barrier forced nothing" in result.output


def test_check_passes_the_shops_own_file() -> None:
    result = CliRunner().invoke(app, ["target", "check", str(SHOP)])
    assert result.exit_code == 0, result.output
    assert "ok   forced race" in result.output


# Concurrent scenarios held at the barrier (sequential ones such as webhook_first are exempt:
# nothing in them runs at once); the acceptance run takes every one 100 times (README).
@pytest.mark.parametrize("scenario", ["simultaneous", "split_invoice"])
async def test_a_misplaced_barrier_never_says_safe(misplaced: Path, scenario: str) -> None:
    spec = target_file.load(misplaced)
    script = SCENARIOS[scenario].on_target(spec)
    assert not isinstance(script, str), script
    outcomes = await race_target_scenario(spec, script, repeat=2, variant="buggy")
    for outcome in outcomes:
        assert outcome.caught or any("forced nothing" in e for e in outcome.errors), outcome.errors
    assert any("forced nothing" in e for o in outcomes for e in o.errors)


def race(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["race", "--target", str(SHOP), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_the_canary_must_be_caught(tmp_path: Path) -> None:
    # The fixed build declared bad on the command line: it holds, so the gate goes red.
    code, output = race("--strategy", "fixed", "--canary", "--scenario", "simultaneous")
    assert code == 1, output
    assert "simultaneous x fixed" in output
    # The file's own canary (buggy: caught_by races) is caught: green.
    out = tmp_path / "run"
    code, output = race("--strategy", "buggy", "--scenario", "simultaneous", "--out", str(out))
    assert code == 0, output
    [cell] = Results.read(out).race
    assert cell.verdict == "race_detected" and cell.passed


async def test_a_bug_only_a_fault_reaches_is_caught_by_the_fault_scenarios(
    racebench_target: TargetRacer,
) -> None:
    for scenario in ("retry_after_failed_capture", "retry_after_lock_timeout"):
        run = await racebench_target(str(SHOP), scenario, variant="early_claim")
        assert run.caught == 1, run.message()
    # ...and no race catches it: the bug is in what a failed capture leaves behind.
    run = await racebench_target(str(SHOP), "simultaneous", variant="early_claim")
    assert run.caught == 0, run.message()
