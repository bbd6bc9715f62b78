"""`racebench bench --faults` on a short real run: backends killed, the database restarted."""

from __future__ import annotations

from pathlib import Path

import pytest

from racebench.harness.database import server
from racebench.loadtests.bench import exit_code, run_bench
from racebench.results import BenchResult, FaultFigures, LatencyMs


def test_faults_round_kills_restarts_and_stays_honest(tmp_path: Path) -> None:
    """A few seconds of contention load, a kill, a restart: only 503s with Retry-After, the
    service answers again soon after the restart, and nothing acknowledged is lost. The round
    runs on a server of its own even when a URL is given."""
    with server() as (url, _embedded):
        done = run_bench(
            strategies="for_update",
            profile="contention",
            users=4,
            rate=None,
            duration="6s",
            rounds=1,
            workers=1,
            processes=1,
            out=tmp_path,
            database_url=url.render_as_string(hide_password=False),
            faults=True,
            kill_every_s=2.5,
        )
    (row,) = done.results.bench
    assert row.error is None and row.requests > 0
    faults = row.faults
    assert faults is not None
    assert faults.kills >= 1 and not faults.kill_errors
    assert faults.restarts == 1
    assert faults.recovery_s is not None and faults.recovery_s < 5.0
    assert set(row.server_errors) <= {"503"}
    assert row.busy_without_retry_after == 0
    assert row.acked_captures > 0 and row.lost_captures == 0 and row.lost_webhooks == 0
    assert not any(row.violations.values())
    assert done.exit_code == 0
    assert done.results.environment["bench"]["faults"] is True


def test_exit_code_fails_on_a_500_a_bare_503_or_a_lost_acknowledgement() -> None:
    base = BenchResult(
        strategy="for_update", profile="contention", round=1, users=1, rate=None,
        duration_s=1.0, requests=10, failures=0, throughput_rps=10.0,
        latency_ms=LatencyMs(mean=1, p50=1, p90=1, p99=1, p999=1, max=1),
        faults=FaultFigures(kills=1, restarts=1, recovery_s=0.2),
    )  # fmt: skip
    assert exit_code([base]) == 0
    assert exit_code([base.model_copy(update={"server_errors": {"503": 3}})]) == 0
    assert exit_code([base.model_copy(update={"server_errors": {"500": 1}})]) == 1
    assert exit_code([base.model_copy(update={"busy_without_retry_after": 1})]) == 1
    assert exit_code([base.model_copy(update={"lost_captures": 1})]) == 1
    assert exit_code([base.model_copy(update={"lost_webhooks": 1})]) == 1


def test_faults_with_concurrent_arms_are_refused_not_skipped(tmp_path: Path) -> None:
    """The arms of a concurrent round share one Locust run and get no fault: refused, before
    any work, rather than a bench that says it ran faults and ran none."""
    with pytest.raises(ValueError, match="--faults runs one arm at a time"):
        run_bench(
            strategies="none,for_update",
            profile="contention",
            users=4,
            rate=None,
            duration="2s",
            rounds=1,
            workers=1,
            processes=1,
            out=tmp_path,
            database_url=None,
            faults=True,
            order="concurrent",
        )
    assert not any(tmp_path.iterdir())
