"""A/A and A/B benches end to end (real PostgreSQL, services and Locust): the verdicts and the
performance gate of `racebench bench --gate` say what is true of the two arms.

- A/A: for_update against itself, five rounds: no measurable difference, and the gate passes.
  Both arms run at the same time from one Locust run (--order concurrent).
- A/B: for_update against a copy that sleeps 5 ms inside its transaction (built here, in
  tests/loadtests/slow_strategy.py, and loaded by the service as package.module:Class): slower,
  with an interval that excludes 0, and the gate fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench import cli
from racebench.harness.database import server
from racebench.reports import stats
from racebench.reports.summary import PairedChange, summarize
from racebench.results import Results

ROOT = Path(__file__).resolve().parents[2]
SLOW = "tests.loadtests.slow_strategy:SlowForUpdate"


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    with server() as (url, _embedded):
        yield url.render_as_string(hide_password=False)


def _bench(tmp_path: Path, admin_url: str, strategies: str, rounds: int) -> tuple[int, str]:
    outcome = CliRunner().invoke(
        cli.app,
        [
            "bench",
            "--strategies",
            strategies,
            "--profile",
            "verify",
            "--users",
            "8",
            "--duration",
            "3s",
            "--rounds",
            str(rounds),
            "--order",
            "concurrent",
            "--gate",
            "--out",
            str(tmp_path),
            "--database-url",
            admin_url,
        ],
    )
    return outcome.exit_code, outcome.output


def _paired(tmp_path: Path) -> PairedChange:
    results = Results.model_validate(json.loads((tmp_path / "results.json").read_text()))
    by_arm = summarize(results).bench["verify"]
    base, other = list(by_arm.values())
    paired = PairedChange.of(other.rounds, base.rounds)
    assert paired is not None
    return paired


def test_a_against_itself_is_no_measurable_difference(tmp_path: Path, admin_url: str) -> None:
    """A 95% interval leaves out 0 in one A/A bench in 20 by design, so a first "difference"
    earns a second bench: both finding one (1 in 400 by chance) means the arms are not alike."""
    verdicts = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        code, output = _bench(out, admin_url, "for_update,for_update", rounds=5)
        assert code == 0, output
        assert "gate passed" in output
        paired = _paired(out)
        assert paired.rounds == 5
        verdicts.append(stats.verdict(paired.throughput, stats.THROUGHPUT))
        if verdicts[-1].startswith("no measurable difference"):
            break
    assert verdicts[-1].startswith("no measurable difference"), verdicts


def test_five_ms_in_the_transaction_is_slower_and_fails_the_gate(
    tmp_path: Path, admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the service imports the test's strategy
    code, output = _bench(tmp_path, admin_url, f"for_update,{SLOW}", rounds=3)
    assert code == 1, output
    assert "gate FAILED" in output
    paired = _paired(tmp_path)
    assert paired.throughput is not None and paired.throughput.high is not None
    assert paired.throughput.high < 0  # the interval excludes 0
    verdict = stats.verdict(paired.throughput, stats.THROUGHPUT)
    assert verdict.startswith("slower by"), verdict
    assert stats.verdict(paired.mean, stats.MEAN_LATENCY).startswith("slower by")
