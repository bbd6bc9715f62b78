"""`racebench demo`, the main job: the race matrix, a short benchmark of the write-up's Before
(`none`) against their After (`for_update`), and the report, in one run folder.

With no --database-url and no DATABASE_URL, one embedded PostgreSQL starts here and serves
both stages (each makes its own fresh databases on it); it stops before the report is drawn.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path

from racebench.console import console as make_console
from racebench.harness.database import redact, render, server
from racebench.loadtests.config import Order
from racebench.results import DEFAULT_RUNS_DIR, RESULTS_FILE, Results, new_run_id

# The write-up's Before and After.
DEMO_STRATEGIES = "none,for_update"
# The write-up's race under load: each payment's verify and webhook arrive at once.
DEMO_PROFILE = "contention"
# Both strategies at the same time, driven by one Locust run, in many short rounds: the
# machine's noise falls on both alike, and each difference comes with a 95% interval narrow
# enough to mean something (loadtests/paired.py).
DEMO_ORDER: Order = "concurrent"
DEMO_ROUNDS = 8
# Enough users to queue on the row locks; on 2 cores more only adds queueing in Python.
DEMO_USERS = 16
# One service process and one Locust process: the 2-core machine runs PostgreSQL as well.
DEMO_SERVICE_WORKERS = 1
DEMO_LOCUST_PROCESSES = 1
RACE_DIR = "race"
BENCH_DIR = "bench"
STAGES = 3

console = make_console(stderr=True, highlight=False)


def _stage(number: int, title: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    console.rule(f"[bold][{number}/{STAGES}] {title}[/]  ({elapsed:.0f} s so far)")


def _guarded(name: str, work: Callable[[], int]) -> int:
    """Run one stage; a crash is reported and counted as a failure, so the next stage and the
    report still run on whatever was measured (Ctrl-C still stops everything)."""
    try:
        return work()
    except Exception as error:
        console.print(f"[bold red]{name} failed:[/] {error}")
        console.print(traceback.format_exc(), style="dim", markup=False)
        return 1


def _read(folder: Path) -> Results | None:
    """A stage's results; None when it wrote none (it failed: already reported) or when its
    file cannot be read (said here, so the report's gaps are explained)."""
    path = folder / RESULTS_FILE
    if not path.exists():
        return None
    try:
        return Results.read(path)
    except ValueError as error:
        console.print(f"[bold red]left out of the report:[/] {error}")
        return None


def merge(run_id: str, race: Results | None, bench: Results | None, **facts: object) -> Results:
    """One results file holding the race matrix and the benchmark rounds."""
    merged = Results(run_id=run_id)
    if race is not None:
        merged.race = race.race
        merged.environment.update(race.environment)
    if bench is not None:
        merged.bench = bench.bench
        merged.environment.update(bench.environment)
    merged.environment["demo"] = {
        "race_run": race.run_id if race else None,
        "bench_run": bench.run_id if bench else None,
        **facts,
    }
    return merged


def _bench(duration: str, out: Path, database_url: str) -> int:
    """The benchmark stage: the rounds, then their summary (racebench.reports computes it)."""
    from racebench.loadtests.bench import run_bench
    from racebench.loadtests.display import RichObserver
    from racebench.reports.bench_table import print_bench_summary

    with RichObserver() as progress:
        done = run_bench(
            strategies=DEMO_STRATEGIES,
            profile=DEMO_PROFILE,
            users=DEMO_USERS,
            rate=None,
            duration=duration,
            rounds=DEMO_ROUNDS,
            order=DEMO_ORDER,
            workers=DEMO_SERVICE_WORKERS,
            processes=DEMO_LOCUST_PROCESSES,
            out=out,
            database_url=database_url,
            progress=progress,
        )
    print_bench_summary(done.results, done.path)
    return done.exit_code


def run_demo(*, out: Path | None, duration: str, database_url: str | None) -> int:
    """Race matrix, benchmark, report; print the table and the report's path. 0 when every
    stage succeeded and the race gate held."""
    from racebench.loadtests.config import parse_duration
    from racebench.race import run_race
    from racebench.reports.build import HTML_FILE, run_report

    parse_duration(duration)  # a typo fails now, not after the race matrix
    run_id = new_run_id("demo")
    run_dir = out or DEFAULT_RUNS_DIR / run_id
    started = time.perf_counter()
    console.print(f"racebench demo: run folder [bold]{run_dir}[/]")
    with server(database_url) as (admin_url, embedded):
        url = render(admin_url)
        where = "embedded PostgreSQL (started for this run)" if embedded else redact(admin_url)
        console.print(f"database: {where}")

        _stage(1, "race matrix: every scenario x every lock strategy", started)
        race_code = _guarded(
            "the race matrix",
            lambda: run_race(
                strategies="all", scenarios="all", out=run_dir / RACE_DIR, database_url=url
            ),
        )
        _stage(
            2,
            f"benchmark: {DEMO_STRATEGIES.replace(',', ' vs ')}, {DEMO_PROFILE}, "
            f"{DEMO_ROUNDS} x {duration} rounds, both at once",
            started,
        )
        bench_code = _guarded("the benchmark", lambda: _bench(duration, run_dir / BENCH_DIR, url))

    _stage(3, "report", started)
    merged = merge(
        run_id,
        _read(run_dir / RACE_DIR),
        _read(run_dir / BENCH_DIR),
        embedded_database=embedded,
        duration=duration,
        rounds=DEMO_ROUNDS,
        users=DEMO_USERS,
        profile=DEMO_PROFILE,
    )
    merged.write(run_dir)
    report_code = run_report(run_dir, announce=False)
    wall_s = time.perf_counter() - started
    codes = {"race matrix": race_code, "benchmark": bench_code, "report": report_code}
    failed = [name for name, code in codes.items() if code != 0]
    verdict = (
        "[green]all stages passed[/]" if not failed else f"[bold red]failed: {', '.join(failed)}[/]"
    )
    console.print(f"racebench demo finished in {wall_s:.0f} s; {verdict}")
    make_console().print(
        f"report: {(run_dir / HTML_FILE).resolve()}", highlight=False, soft_wrap=True
    )
    return 0 if not failed else 1
