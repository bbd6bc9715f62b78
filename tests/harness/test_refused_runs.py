"""The harness is not blind to a race that never happened: when every request is refused (the
gateway signs with secrets the service does not have), no capture runs, no interleaving is
forced, and the run is an error, never "safe"; `racebench race` exits 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.harness import runner
from racebench.harness.cells import Cell, CellRuns
from racebench.harness.gateway import Gateway
from racebench.harness.locks import Monitor
from racebench.pytest_plugin import AppFactory
from racebench.results import Results, TimelineEvent
from racebench.scenarios import SCENARIOS


def wrong_gateway() -> Gateway:
    """Razorpay as an attacker would play it: signatures with the wrong secrets."""
    return Gateway(key_secret="wrong", webhook_secret="wrong")


@pytest.mark.parametrize(
    "scenario", ["simultaneous", "interleaved", "out_of_order", "split_invoice", "hundred_way"]
)
async def test_a_run_whose_requests_are_all_refused_is_an_error(
    racebench_app: AppFactory, racebench_monitor: Monitor, scenario: str
) -> None:
    target = await racebench_app("for_update")
    outcome = await runner.run_once(
        SCENARIOS[scenario].script, target, racebench_monitor, gateway=wrong_gateway()
    )
    assert not outcome.caught  # nothing was captured, so no invariant is violated...
    errors = "\n".join(outcome.errors)
    assert "did not happen" in errors  # ...but the schedule was not played,
    assert "answered 400 signature_invalid, expected 2xx" in errors  # and each answer is wrong
    assert not any(
        isinstance(row, TimelineEvent) and row.what.startswith("COMMIT") for row in outcome.timeline
    )
    runs = CellRuns(Cell(SCENARIOS[scenario], "for_update", "in_process"), [outcome], [None])
    assert runs.result().verdict == "error"
    assert not runs.result().passed


async def test_without_schedules_a_refused_answer_is_still_an_error(
    racebench_app: AppFactory, racebench_monitor: Monitor
) -> None:
    target = await racebench_app("for_update")
    outcome = await runner.run_once(
        SCENARIOS["client_first"].script,
        target,
        racebench_monitor,
        gateway=wrong_gateway(),
        use_schedules=False,
    )
    assert any("answered 400 signature_invalid" in e for e in outcome.errors), outcome.errors


def test_race_exits_1_when_every_request_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "Gateway", wrong_gateway)
    command = ["race", "--strategy", "for_update", "--scenario", "simultaneous,interleaved"]
    done = CliRunner().invoke(app, [*command, "--mode", "in_process", "--out", str(tmp_path)])
    assert done.exit_code == 1, done.output
    verdicts = {r.scenario: r.verdict for r in Results.read(tmp_path).race}
    assert verdicts == {"simultaneous": "error", "interleaved": "error"}
