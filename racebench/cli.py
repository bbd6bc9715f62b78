"""The `racebench` command (DESIGN.md, CONTRACT: command line)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from racebench.harness.database import DatabaseError
from racebench.reports.thresholds import (
    DEFAULT_MAX_P99_INCREASE_PCT,
    DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    DEFAULT_MIN_P99_INCREASE_MS,
)

app = typer.Typer(
    name="racebench",
    help="Force, detect and measure the payment-capture race.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="postgresql://... (default: $DATABASE_URL, else an embedded PostgreSQL)",
        show_default=False,
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]racebench:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def serve(
    strategy: Annotated[
        str | None,
        typer.Option(help="lock strategy (default: $RACEBENCH_LOCK_STRATEGY, else for_update)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the reference service under uvicorn."""
    from racebench.serve import serve as run_serve

    try:
        run_serve(
            strategy=strategy or os.environ.get("RACEBENCH_LOCK_STRATEGY") or "for_update",
            host=host,
            port=port,
            workers=workers,
            database_url=database_url,
        )
    except (DatabaseError, ValueError) as error:
        raise _fail(str(error)) from None


# One paragraph per line: the help keeps a docstring's line breaks. A test checks the names.
RACE_HELP = "\n\n".join(
    [
        "Run scenarios x strategies; exit 0 only if every safe strategy held every invariant and"
        " every unsafe one was caught.",
        "Scenarios: simultaneous, webhook_first, client_first, hundred_way, interleaved,"
        " duplicate_webhook, out_of_order, failed_then_captured, captured_then_stale_failed,"
        " split_invoice.",
        "Strategies: none, for_update, conditional_update, optimistic, advisory, serializable,"
        " app_lock.",
        "Exit codes: 0 every cell as expected; 1 a cell failed (a safe strategy left a"
        " violation, an unsafe one was not caught, or a run broke: an unexpected answer, a"
        " schedule that did not happen); 2 bad input (an unknown name, a scenario named that"
        " does not run in the mode asked) or a database error.",
    ]
)


@app.command(help=RACE_HELP)
def race(
    strategy: Annotated[str, typer.Option(help="a strategy name, a,b,c, or all")] = "all",
    scenario: Annotated[str, typer.Option(help="a scenario name, a,b,c, or all")] = "all",
    repeat: Annotated[int, typer.Option(min=1, help="runs of each cell")] = 1,
    seed: Annotated[int | None, typer.Option(help="seed for the race-point jitter")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="also write results here")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default reports/runs/<id>)")] = None,
    junit: Annotated[Path | None, typer.Option(help="write JUnit XML here")] = None,
    timeline: Annotated[bool, typer.Option(help="print each run's timeline")] = False,
    mode: Annotated[
        str,
        typer.Option(
            help="auto (each scenario in its own modes), in_process, or http (with --scenario"
            " all: the scenarios that run over http)"
        ),
    ] = "auto",
    schedule: Annotated[
        bool, typer.Option(help="force the scenarios' interleavings at the race points")
    ] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Run scenarios x strategies; exit 0 only if every safe strategy held and every unsafe one
    was caught (the help text, with the names and exit codes, is RACE_HELP)."""
    from racebench.harness.matrix import run_race

    try:
        code = run_race(
            strategies=strategy,
            scenarios=scenario,
            repeat=repeat,
            seed=seed,
            json_path=json_path,
            out=out,
            junit=junit,
            show_timeline=timeline,
            mode=mode,
            database_url=database_url,
            schedules=schedule,
        )
    except (DatabaseError, ValueError) as error:
        raise _fail(str(error)) from None
    raise typer.Exit(code)


@app.command()
def bench(
    strategies: Annotated[str, typer.Option(help="comma-separated strategies")] = "none,for_update",
    profile: Annotated[str, typer.Option(help="verify, webhook, contention, hot_row, mixed")] = (
        "verify"
    ),
    users: Annotated[int, typer.Option(min=1, help="closed model: concurrent users")] = 32,
    rate: Annotated[
        float | None, typer.Option(help="open model: requests/s on a fixed schedule")
    ] = None,
    duration: Annotated[str, typer.Option(help="measured time per round, e.g. 30s, 2m")] = "30s",
    rounds: Annotated[int, typer.Option(min=1, help="alternating rounds (A B A B ...)")] = 3,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn workers of the service")] = 1,
    processes: Annotated[int, typer.Option(min=1, help="Locust processes")] = 1,
    out: Annotated[Path | None, typer.Option(help="run folder (default reports/runs/<id>)")] = None,
    ceiling: Annotated[
        bool, typer.Option(help="also run pgbench on the capture transaction, in the same run")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Benchmark strategies under load with Locust; count violations left behind."""
    from racebench.harness.service_process import ServiceStartError
    from racebench.loadtests.bench import run_bench
    from racebench.loadtests.display import RichObserver
    from racebench.reports.bench_table import print_bench_summary

    try:
        with RichObserver() as progress:
            done = run_bench(
                strategies=strategies,
                profile=profile,
                users=users,
                rate=rate,
                duration=duration,
                rounds=rounds,
                workers=workers,
                processes=processes,
                out=out,
                database_url=database_url,
                ceiling=ceiling,
                progress=progress,
            )
    except (DatabaseError, ValueError, ServiceStartError) as error:
        raise _fail(str(error)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; the service and Locust are stopped", code=130) from None
    print_bench_summary(done.results, done.path)
    raise typer.Exit(done.exit_code)


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="a run folder holding results.json, or that results.json")
    ],
    baseline: Annotated[
        Path | None, typer.Option(help="compare against this run folder (the performance gate)")
    ] = None,
    max_throughput_drop: Annotated[
        float, typer.Option(help="gate: largest allowed throughput drop, percent")
    ] = DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    max_p99_increase: Annotated[
        float, typer.Option(help="gate: largest allowed p99 increase, percent")
    ] = DEFAULT_MAX_P99_INCREASE_PCT,
    min_p99_increase_ms: Annotated[
        float, typer.Option(help="gate: p99 increases below this many ms are noise")
    ] = DEFAULT_MIN_P99_INCREASE_MS,
) -> None:
    """Write table.md, matrix.md and report.html for a run (and compare with a baseline).

    Exits 1 when the run broke the race gate (a safe strategy left violations, or an unsafe one
    went uncaught) or, with --baseline, when throughput or p99 moved past the thresholds."""
    from racebench.reports.build import run_report

    try:
        code = run_report(
            run_dir,
            baseline=baseline,
            max_throughput_drop=max_throughput_drop,
            max_p99_increase=max_p99_increase,
            min_p99_increase_ms=min_p99_increase_ms,
        )
    except ValueError as error:
        raise _fail(str(error)) from None
    raise typer.Exit(code)


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option(help="run folder (default reports/runs/<id>)")] = None,
    duration: Annotated[str, typer.Option(help="benchmark time per round")] = "10s",
    database_url: DatabaseUrl = None,
) -> None:
    """The main job: the race matrix, a short benchmark of none vs for_update, the report."""
    from racebench.demo import run_demo

    try:
        code = run_demo(out=out, duration=duration, database_url=database_url)
    except (DatabaseError, ValueError) as error:
        raise _fail(str(error)) from None
    raise typer.Exit(code)


def _stop_on_sigterm() -> None:
    """Turn SIGTERM (a CI cancel, `timeout`, `docker stop`) into KeyboardInterrupt, so that the
    `finally` blocks that stop child services and drop run databases run for it as for Ctrl-C."""

    def as_ctrl_c(signum: int, frame: object) -> None:
        # Raised directly, not re-sent as SIGINT: a job started in the background by a
        # non-interactive shell inherits SIGINT ignored, and would then never stop.
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, as_ctrl_c)


def main() -> None:
    _stop_on_sigterm()
    app()


if __name__ == "__main__":
    main()
