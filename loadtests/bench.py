"""`racebench bench`: every strategy under the same load, in alternating rounds, checked after.

Strategies alternate within each round (A B A B ...) so that machine drift hits them alike, or
run at the same time (--order concurrent, loadtests/paired.py). Each cell (a strategy in a
round) is one row of results.json,
written after every cell so that partial results survive. The bench writes rounds only: every
aggregate (medians, spread, the change against the first strategy) is racebench.reports' work,
and the command that ran the bench prints them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from racebench.harness.database import render, server
from racebench.loadtests.ceiling import Ceiling, measure_ceiling
from racebench.loadtests.cell import NOBODY, CellRun
from racebench.loadtests.config import BenchConfig, Order, parse_duration, parse_strategies
from racebench.loadtests.faults import DEFAULT_KILL_EVERY_S
from racebench.loadtests.paired import run_paired
from racebench.loadtests.profiles import parse_profile
from racebench.progress import Progress
from racebench.reference_service.strategies import holds
from racebench.results import DEFAULT_RUNS_DIR, BenchResult, Results, new_run_id


@dataclass(frozen=True)
class BenchRun:
    """What a finished bench leaves: its results (rounds only), where they are, the exit code."""

    results: Results
    path: Path
    exit_code: int


def run_cells(
    config: BenchConfig,
    progress: Progress[BenchResult] | None = None,
    on_result: Callable[[BenchResult], None] | None = None,
) -> list[BenchResult]:
    """Every arm in every round, in the config's order; one result per cell. Concurrent arms
    share one Locust run a round (loadtests/paired.py); the other orders run one cell at a
    time (loadtests/cell.py)."""
    shown: Progress[BenchResult] = progress or NOBODY
    if config.order == "concurrent" and len(config.strategies) > 1:
        return run_paired(config, shown, on_result)
    results: list[BenchResult] = []
    index = 0
    for round_no in range(1, config.rounds + 1):
        for label, strategy in config.arm_order(round_no):
            index += 1
            shown.started(f"{label} round {round_no}/{config.rounds}", index, config.cells)
            result = CellRun(config, strategy, round_no, shown, label=label).run()
            results.append(result)
            shown.finished(result)
            if on_result is not None:
                on_result(result)
    return results


def exit_code(rows: Sequence[BenchResult]) -> int:
    """1 if a cell failed, answered dishonestly (a 5xx other than 503, a 503 without
    Retry-After, an acknowledged capture or webhook the database lost) or a strategy expected to
    hold with the round's service processes left a violation, else 0."""
    for row in rows:
        if row.errored or not row.answered_honestly:
            return 1
        if holds(row.strategy, row.workers) and any(row.violations.values()):
            return 1
    return 0


def build_results(config: BenchConfig, rows: Sequence[BenchResult], run_id: str) -> Results:
    """The results file: one row per cell that ran."""
    results = Results(run_id=run_id)
    results.environment["bench"] = {
        "profile": config.profile.name,
        "strategies": config.strategies,
        "labels": config.labels,
        "order": config.order,
        "users": config.users,
        "rate": config.rate,
        "duration_s": config.duration_s,
        "rounds": config.rounds,
        "workers": config.workers,
        "processes": config.processes,
        "load_average_at_start": list(os.getloadavg()),
        "faults": config.faults,
        "kill_every_s": config.kill_every_s if config.faults else None,
    }
    results.bench = list(rows)
    return results


@contextmanager
def _bench_server(database_url: str | None, faults: bool) -> Iterator[str | None]:
    """The server the cells provision their databases on: the one named, or one embedded
    PostgreSQL for the whole bench (None with --faults: each cell starts its own)."""
    if faults or database_url or os.environ.get("DATABASE_URL"):
        yield database_url
        return
    with server(None) as (admin_url, _):
        yield render(admin_url)


def run_bench(
    *,
    strategies: str,
    profile: str,
    users: int,
    rate: float | None,
    duration: str,
    rounds: int,
    workers: int,
    processes: int,
    out: Path | None,
    database_url: str | None,
    ceiling: bool = False,
    faults: bool = False,
    kill_every_s: float = DEFAULT_KILL_EVERY_S,
    order: Order = "alternate",
    progress: Progress[BenchResult | Ceiling] | None = None,
) -> BenchRun:
    """Run the benchmark and write results.json into the run folder (after every cell, and
    once more at the end). With `ceiling`, pgbench runs the capture transaction after the
    rounds, in the same run, and its rate is recorded beside them.

    With no database URL (and no DATABASE_URL), one embedded PostgreSQL serves every cell
    (arms that run at the same time each get a database of their own on it); --faults cells
    start servers of their own, which they restart."""
    if kill_every_s <= 0:
        raise ValueError(f"--kill-every must be positive, not {kill_every_s}")
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, not {rate}")
    with _bench_server(database_url, faults) as database_url:
        run_id = new_run_id("bench")
        config = BenchConfig(
            strategies=parse_strategies(strategies),
            profile=parse_profile(profile),
            users=users,
            rate=rate,
            duration_s=parse_duration(duration),
            rounds=rounds,
            workers=workers,
            processes=processes,
            run_dir=out or DEFAULT_RUNS_DIR / run_id,
            database_url=database_url,
            faults=faults,
            kill_every_s=kill_every_s,
            order=order,
        )
        load_at_start = os.getloadavg()
        rows: list[BenchResult] = []

        def keep(result: BenchResult) -> None:
            rows.append(result)
            build_results(config, rows, run_id).write(config.run_dir)  # partial results survive

        run_cells(config, progress, keep)
        measured = None
        if ceiling:
            if progress is not None:
                progress.started("pgbench", config.cells + 1, config.cells + 1)
            measured = measure_ceiling(config, progress)
        results = build_results(config, rows, run_id)
        results.environment["bench"]["load_average_at_start"] = list(load_at_start)
        if measured is not None:
            results.environment["ceiling"] = {"pgbench": measured.to_json()}
        path = results.write(config.run_dir)
        return BenchRun(results, path, exit_code(rows))
