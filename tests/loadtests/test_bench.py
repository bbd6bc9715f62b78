"""The bench orchestrator end to end on a short run: real PostgreSQL, service, Locust.

Each cell provisions its own database (harness.database.provision), so these tests share
nothing with the rest of the suite but the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from racebench import cli
from racebench.harness.database import connect, parse_url, server
from racebench.loadtests.bench import run_bench, run_cells
from racebench.loadtests.config import BenchConfig, Order
from racebench.loadtests.profiles import PROFILES
from racebench.results import BenchResult, Results

# Short but real: a few seconds of load, a few users.
SHORT_DURATION = "3s"
FEW_USERS = 4


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


async def _racebench_databases(admin_url: str) -> set[str]:
    conn = await connect(parse_url(admin_url))
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'racebench_%'")
    finally:
        await conn.close()
    return {r["datname"] for r in rows}


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """$DATABASE_URL's server, or an embedded one kept up for this module's tests."""
    with server() as (url, _embedded):
        yield url.render_as_string(hide_password=False)


def test_contention_bench_catches_none_and_clears_for_update(
    tmp_path: Path, admin_url: str
) -> None:
    """Two strategies, alternating, with two Locust processes; then nothing is left running."""
    # Through the CLI, with the contract's options.
    outcome = CliRunner().invoke(
        cli.app,
        [
            "bench", "--strategies", "none,for_update", "--profile", "contention",
            "--users", str(FEW_USERS), "--duration", SHORT_DURATION, "--rounds", "1",
            "--workers", "1", "--processes", "2", "--out", str(tmp_path),
            "--database-url", admin_url, "--order", "alternate",
        ],
    )  # fmt: skip
    assert outcome.exit_code == 0, outcome.output
    # The summary at the end is racebench.reports' (the table wraps at CliRunner's width).
    assert "racebench bench: medians of the rounds" in outcome.output

    results = Results.read(tmp_path)  # rounds only: every aggregate is the reports' work
    assert [(r.strategy, r.round) for r in results.bench] == [("none", 1), ("for_update", 1)]
    none, for_update = results.bench
    assert sum(none.violations.values()) > 0, ("the canary must be caught", none)
    assert for_update.violations == {}, for_update
    assert (none.expected_safe, for_update.expected_safe) == (False, True)
    for row in results.bench:
        assert row.requests > 0 and row.failures == 0, (row.strategy, row.outcomes)
        assert row.error is None and row.workers == 1
        assert row.locust_processes == 2
        assert row.acked_webhooks > 0
        assert row.outcomes.get("verify:captured", 0) > 0
        assert row.latency_ms.p50 <= row.latency_ms.p99 <= row.latency_ms.max
        assert row.locust is not None and row.locust.requests > 0  # Locust's own, kept beside
        assert row.cpu is not None and "service" in row.cpu.groups
    assert _children() == []


def test_concurrent_rounds_share_one_locust_and_count_each_round_once(
    tmp_path: Path, admin_url: str
) -> None:
    """--order concurrent: both arms in one Locust run a round, each on a fresh service of its
    own, on a database kept across rounds; a round's violations are the ones it added, and its
    incidents are its own payments (their sum is what the database holds at the end)."""
    config = BenchConfig(
        strategies=["none", "for_update"],
        profile=PROFILES["contention"],
        users=FEW_USERS,
        rate=None,
        duration_s=2.0,
        rounds=3,
        workers=1,
        processes=1,
        run_dir=tmp_path,
        database_url=admin_url,
        order="concurrent",
    )
    rows = run_cells(config)
    assert [(r.arm, r.round) for r in rows] == [
        (arm, n) for n in (1, 2, 3) for arm in ("none", "for_update")
    ]
    none = [r for r in rows if r.strategy == "none"]
    # A service process of its own for each arm in each round (the uncounted round 0 too),
    # the arms on alternate databases.
    logs = sorted(p.name for p in (tmp_path / "services").iterdir())
    assert logs == sorted(
        f"r{n}-{arm}-db{(i + n) % 2 + 1}.log"
        for n in (0, 1, 2, 3)
        for i, arm in enumerate(["none", "for_update"])
    )
    for row in rows:
        assert row.requests > 0 and row.failures == 0 and row.error is None, row.outcomes
        assert row.pool_wrapped == 0  # every round has payments of its own
        assert row.users == FEW_USERS // 2  # the users split evenly
        assert row.cpu is not None and {"service", "postgres", "locust"} <= set(row.cpu.groups)
        assert row.cpu_ms_per_request is not None and row.cpu_ms_per_request > 0
    # One Locust run a round, shared: both arms' figures name the same Locust CPU.
    for n in (1, 2, 3):
        pair = [r for r in rows if r.round == n]
        assert pair[0].cpu is not None and pair[1].cpu is not None
        assert pair[0].cpu.groups["locust"] == pair[1].cpu.groups["locust"]
    assert all(r.violations == {} for r in rows if r.strategy == "for_update")
    doubles = [r.violations.get("DOUBLE_CAPTURE", 0) for r in none]
    assert all(n > 0 for n in doubles), doubles  # the canary is caught in every round
    for row in none:  # a round's incidents are its own double captures, counted once each
        assert row.incidents is not None
        assert row.incidents.captured_twice == row.violations["DOUBLE_CAPTURE"]
        # A contention item is one payment's verify and webhook: a round cannot have captured
        # more payments twice than it touched (counted since the start, rounds 2 and 3 would).
        assert row.violations["DOUBLE_CAPTURE"] <= row.requests // 2, row
    assert _children() == []


def test_open_model_never_runs_ahead_of_its_schedule(tmp_path: Path, admin_url: str) -> None:
    rate = 50.0
    recorder = Recorder()
    done = run_bench(
        strategies="for_update",
        profile="verify",
        users=FEW_USERS,
        rate=rate,
        duration=SHORT_DURATION,
        rounds=1,
        workers=1,
        processes=1,
        out=tmp_path,
        database_url=admin_url,
        progress=recorder,
    )

    (row,) = Results.read(tmp_path).bench
    assert done.exit_code == 0 and done.results.bench == [row]
    assert row.model == "open" and row.rate == rate
    assert recorder.units == [("for_update round 1/1", 1, 1)]
    assert "load" in recorder.phases and recorder.results == [row]
    # Slots start at 0, 1/rate, 2/rate, ...: a run of d seconds can start at most rate*d + 1.
    assert 0 < row.requests <= rate * 3 + 1
    assert _children() == []


class Recorder:
    """A racebench.progress.Progress that keeps what it is told."""

    def __init__(self) -> None:
        self.units: list[tuple[str, int, int]] = []
        self.phases: list[str] = []
        self.results: list[BenchResult] = []

    def started(self, label: str, index: int, total: int) -> None:
        self.units.append((label, index, total))

    def phase(self, name: str) -> None:
        self.phases.append(name)

    def advanced(self, done: float, total: float) -> None:
        pass

    def finished(self, result: BenchResult) -> None:
        self.results.append(result)


class InterruptDuringLoad(Recorder):
    """Plays Ctrl-C as soon as Locust is running."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: list[int] = []
        self.databases: set[str] = set()

    def advanced(self, done: float, total: float) -> None:
        children = _children()
        self.pids = [p.pid for p in children]
        for child in children:
            url = child.environ().get("DATABASE_URL")
            if url and "serve" in child.cmdline():
                self.databases.add(parse_url(url).database or "")
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("order", "strategies"),
    [("alternate", ["for_update"]), ("concurrent", ["none", "for_update"])],
)
def test_ctrl_c_during_the_load_leaves_no_process_and_no_database(
    tmp_path: Path, admin_url: str, order: Order, strategies: list[str]
) -> None:
    """Also for a concurrent bench: its round's services, the shared Locust and both
    databases are gone."""
    observer = InterruptDuringLoad()
    config = BenchConfig(
        order=order,
        strategies=strategies,
        profile=PROFILES["verify"],
        users=FEW_USERS,
        rate=None,
        duration_s=30.0,
        rounds=1,
        workers=1,
        processes=2,
        run_dir=tmp_path,
        database_url=admin_url,
        warmup_requests=10,
    )

    with pytest.raises(KeyboardInterrupt):
        run_cells(config, observer)

    assert len(observer.pids) >= 2, "the service and Locust were running when interrupted"
    assert _children() == []
    assert not any(psutil.pid_exists(pid) for pid in observer.pids)
    assert len(observer.databases) == len(strategies), "each arm's own database(s)"
    assert not observer.databases & asyncio.run(_racebench_databases(admin_url))
