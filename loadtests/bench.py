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
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.file import load as load_target
from racebench.loadtests.ceiling import Ceiling, measure_ceiling
from racebench.loadtests.cell import NOBODY, CellRun
from racebench.loadtests.config import BenchConfig, Order, parse_duration, parse_strategies
from racebench.loadtests.faults import DEFAULT_KILL_EVERY_S
from racebench.loadtests.paired import run_paired
from racebench.loadtests.profiles import parse_profile
from racebench.loadtests.system import ReferenceSystem, System, TargetSystem
from racebench.names import ALL, pick
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
        expected_safe = (
            row.expected_safe
            if row.expected_safe is not None
            else holds(row.strategy, row.workers)  # a row of a file that did not say
        )
        if expected_safe and any(row.violations.values()):
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
        "system": config.system.name,
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
    strategies: str | None,
    profile: str,
    users: int,
    rate: float | None,
    duration: str,
    rounds: int,
    workers: int | None,
    processes: int,
    out: Path | None,
    database_url: str | None,
    ceiling: bool = False,
    faults: bool = False,
    kill_every_s: float = DEFAULT_KILL_EVERY_S,
    order: Order = "alternate",
    target: str | None = None,
    progress: Progress[BenchResult | Ceiling] | None = None,
) -> BenchRun:
    """Run the benchmark and write results.json into the run folder (after every cell, and
    once more at the end). With `ceiling`, pgbench runs the capture transaction after the
    rounds, in the same run, and its rate is recorded beside them. With `target` (a target
    file), the arms are its variants (`strategies`) and the load goes to its service.

    With no database URL (and no DATABASE_URL), one embedded PostgreSQL serves every cell
    (arms that run at the same time each get a database of their own on it); --faults cells
    start servers of their own, which they restart."""
    if kill_every_s <= 0:
        raise ValueError(f"--kill-every must be positive, not {kill_every_s}")
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, not {rate}")
    system: System
    if target is not None:
        spec = load_target(target)
        refuse_for_target(
            spec, ceiling=ceiling, faults=faults, workers=workers, database_url=database_url
        )
        system = TargetSystem(spec)
        arms = target_arms(spec, strategies)
        workers = workers or spec.service.workers
    else:
        system = ReferenceSystem()
        arms = parse_strategies(strategies or DEFAULT_STRATEGIES)
        workers = workers or 1
    if faults and order == "concurrent" and len(arms) > 1:
        # The kills and the restart belong to a cell with a server of its own; the arms of a
        # concurrent round share one Locust run, and would get no fault at all.
        raise ValueError(
            "--faults runs one arm at a time, each on a server it restarts: use --order "
            "alternate or abba with it (--order concurrent would run no fault)"
        )
    # A target on its own database needs no server of racebench's.
    with _bench_server(database_url, faults or not system.own_databases) as database_url:
        run_id = new_run_id("bench")
        config = BenchConfig(
            strategies=arms,
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
            system=system,
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


# `racebench bench` with no --strategies: the write-up's Before and After.
DEFAULT_STRATEGIES = "none,for_update"


def target_arms(spec: TargetSpec, strategies: str | None) -> list[str]:
    """A target bench's arms: variants of the file (a name may come twice: an A/A), `all` of
    them (the default), or the target itself when it has none."""
    if spec.variants:
        return pick(strategies or ALL, list(spec.variants), f"variant of {spec.name}", repeats=True)
    if spec.takes_variant:
        if strategies is None or strategies.strip() == ALL:
            raise ValueError(
                f"{spec.path}: the service takes {{variant}} but the file declares no "
                "[variants]: name the builds with --strategies a,b"
            )
        return pick(strategies, [], "variant", repeats=True, also=str.isidentifier)
    return pick(strategies or spec.name, [spec.name], f"arm of {spec.name}", repeats=True)


def refuse_for_target(
    spec: TargetSpec,
    *,
    ceiling: bool,
    faults: bool,
    workers: int | None,
    database_url: str | None,
) -> None:
    """The options a target bench cannot apply, each refused with why."""
    if ceiling:
        raise ValueError(
            "--ceiling: pgbench runs the reference service's capture transaction; a target's "
            "is its own, unknown to racebench"
        )
    if faults and not spec.owns_database:
        raise ValueError(
            f"--faults restarts a database racebench owns: give {spec.name!r} "
            '[database].url = "{database_url}" (racebench then makes it), or leave --faults out'
        )
    if workers is not None and not spec.service.takes("workers"):
        raise ValueError(
            f"--workers: the target {spec.name!r}'s [service].command takes no {{workers}}"
        )
    if database_url is not None and not spec.owns_database:
        raise ValueError(
            f"--database-url: the target {spec.name!r} names its own database ([database].url)"
        )
