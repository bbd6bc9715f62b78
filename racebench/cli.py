"""The `racebench` command (docs/contracts.md, command line)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

import racebench
from racebench.console import console as make_console
from racebench.harness.database import DatabaseError
from racebench.reports.thresholds import (
    DEFAULT_MAX_P99_INCREASE_PCT,
    DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    DEFAULT_MIN_P99_INCREASE_MS,
)

if TYPE_CHECKING:
    from racebench.loadtests.config import Order

app = typer.Typer(
    name="racebench",
    help="Force, detect and measure the payment-capture race.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help, the same in a terminal and in a CI log
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 100},
)
console = make_console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="postgresql://... (default: $DATABASE_URL, else an embedded PostgreSQL)",
        show_default=False,
    ),
]

RunFolder = Annotated[
    Path | None,
    typer.Option(metavar="DIR", help="run folder (default ./reports/runs/<id>)"),
]
JsonCopy = Annotated[
    Path | None, typer.Option("--json", metavar="PATH", help="also write results here")
]
# A target's service, started by racebench (explore, hints, target init).
TargetWorkers = Annotated[
    int | None,
    typer.Option(min=1, metavar="N", help="the service's workers (default: the target file's)"),
]

# The performance gate's thresholds (bench --gate, report --baseline).
MaxThroughputDrop = Annotated[
    float, typer.Option(metavar="PCT", help="gate: largest allowed throughput drop, percent")
]
MaxP99Increase = Annotated[
    float, typer.Option(metavar="PCT", help="gate: largest allowed p99 increase, percent")
]
MinP99IncreaseMs = Annotated[
    float, typer.Option(metavar="MS", help="gate: p99 increases below this many ms are noise")
]


Names = Callable[[], dict[str, tuple[str, ...]]]


def _strategies() -> dict[str, tuple[str, ...]]:
    from racebench.reference_service.strategies import STRATEGY_NAMES

    return {"Strategies": STRATEGY_NAMES}


def _scenarios_and_strategies() -> dict[str, tuple[str, ...]]:
    from racebench.scenarios import SCENARIO_NAMES

    return {"Scenarios": SCENARIO_NAMES, **_strategies()}


def _strategies_and_profiles() -> dict[str, tuple[str, ...]]:
    from racebench.loadtests.profiles import PROFILE_NAMES

    return {**_strategies(), "Profiles": PROFILE_NAMES}


def _nothing() -> dict[str, tuple[str, ...]]:
    return {}


class _HelpWithNames(TyperCommand):
    """A command whose --help lists the names it takes, read from the registries (so a new
    strategy, scenario or profile shows up by itself) only when the help is shown: importing
    the registries costs more than a second that `racebench --version` should not pay."""

    names: Names = _nothing
    exits: str = ""
    summary: str = ""

    @property  # type: ignore[override]
    def help(self) -> str:
        listed = [f"{label}: {', '.join(values)}." for label, values in self.names().items()]
        # One paragraph a line: click keeps paragraphs apart and wraps inside them.
        return "\n\n".join([self.summary, *listed, f"Exit codes: {self.exits}"])

    @help.setter
    def help(self, summary: str | None) -> None:
        self.summary = summary or ""


def _command(summary: str, names: Names, exits: str) -> Any:
    """app.command() for a command whose help is `summary`, its names and its exit codes."""
    cls = type("Command", (_HelpWithNames,), {"names": staticmethod(names), "exits": exits})
    return app.command(cls=cls, help=summary, short_help=summary)


BAD_INPUT = "2 bad input (an unknown name, a bad value) or no database"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"racebench {racebench.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Force, detect and measure the payment-capture race."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    # Escaped: a message may quote a field such as `[verify].path`, which is not markup.
    console.print(f"[bold red]racebench:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@_command(
    "Run the reference service under uvicorn.",
    _strategies,
    f"0 stopped (Ctrl-C, SIGTERM); {BAD_INPUT}.",
)
def serve(
    strategy: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="lock strategy (default: $RACEBENCH_LOCK_STRATEGY, else for_update)",
        ),
    ] = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="address to listen on")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(metavar="PORT", help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="uvicorn worker processes")] = 1,
    database_url: DatabaseUrl = None,
) -> None:
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


@_command(
    "Run scenarios x strategies; exit 0 only if every safe strategy held every invariant and"
    " every unsafe one was caught.",
    _scenarios_and_strategies,
    "0 every cell as expected; 1 a cell failed (a safe strategy left a violation, an"
    " unsafe one was not caught, or a run broke: an unexpected answer, a schedule that did not"
    " happen); 2 bad input (an unknown name, a scenario named that does not run in the mode"
    " asked) or no database.",
)
def race(
    strategy: Annotated[
        str, typer.Option(metavar="NAMES", help="a strategy name, a,b,c, or all")
    ] = "all",
    scenario: Annotated[
        str, typer.Option(metavar="NAMES", help="a scenario name, a,b,c, or all")
    ] = "all",
    repeat: Annotated[int, typer.Option(min=1, metavar="K", help="runs of each cell")] = 1,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="seed for the race-point jitter")
    ] = None,
    json_path: JsonCopy = None,
    out: RunFolder = None,
    junit: Annotated[Path | None, typer.Option(metavar="PATH", help="write JUnit XML here")] = None,
    timeline: Annotated[bool, typer.Option(help="print each run's timeline")] = False,
    mode: Annotated[
        str,
        typer.Option(
            metavar="MODE",
            help="auto (each scenario in its own modes), in_process, or http (with --scenario"
            " all: the scenarios that run over http)",
        ),
    ] = "auto",
    schedule: Annotated[
        bool, typer.Option(help="force the scenarios' interleavings at the race points")
    ] = True,
    database_url: DatabaseUrl = None,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="race your own service: a target file (see README), or `reference`",
        ),
    ] = None,
    barrier: Annotated[
        bool, typer.Option(help="with --target: force the race with the table-lock barrier")
    ] = True,
    canary: Annotated[
        bool,
        typer.Option(
            help="with --target: the build is known to be bad, and must be caught (by every"
            " scenario named, or with --scenario all by every scenario that races captures)"
        ),
    ] = False,
) -> None:
    from racebench.race import run_race

    if target is not None:
        refused = [
            name
            for name, given in (
                ("--mode", mode != "auto"),
                ("--seed", seed is not None),
                ("--no-schedule", not schedule),
            )
            if given
        ]
        if refused:
            raise _fail(
                f"{', '.join(refused)}: not with --target, which races over HTTP and forces the "
                "interleavings with the barrier (no race points to schedule or jitter); "
                "--no-barrier sends a plain burst instead"
            )
        code = _race_target(
            target,
            strategy,
            scenario,
            repeat,
            barrier,
            canary,
            database_url,
            json_path,
            out,
            junit,
            timeline,
        )
        raise typer.Exit(code)
    if not barrier or canary:
        raise _fail("--no-barrier and --canary are for a target: add --target FILE")
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


def _race_target(
    target: str,
    strategy: str,
    scenario: str,
    repeat: int,
    barrier: bool,
    canary: bool,
    database_url: str | None,
    json_path: Path | None,
    out: Path | None,
    junit: Path | None,
    timeline: bool,
) -> int:
    from racebench.harness.target.barrier import BarrierError
    from racebench.harness.target.service import TargetUnreachable
    from racebench.race import run_target_race

    try:
        return run_target_race(
            target,
            strategies=strategy,
            scenarios=scenario,
            repeat=repeat,
            barrier=barrier,
            canary=canary,
            database_url=database_url,
            json_path=json_path,
            out=out,
            junit=junit,
            show_timeline=timeline,
        )
    except (DatabaseError, ValueError, TargetUnreachable, BarrierError) as error:
        raise _fail(str(error)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; the barrier is released and the service stopped", 130) from None


@_command(
    "Benchmark strategies under load with Locust; count the violations left behind.",
    _strategies_and_profiles,
    "0 every round ran and every strategy expected to hold left no violation; 1 a round failed,"
    " answered a 5xx other than 503 or a 503 without Retry-After, lost an acknowledged capture"
    f" or webhook, or such a strategy left a violation; {BAD_INPUT}; 130 interrupted.",
)
def bench(
    strategies: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="comma-separated strategies, or all (default none,for_update); with --target:"
            " its variants (default all), a name twice for an A/A",
            show_default=False,
        ),
    ] = None,
    profile: Annotated[str, typer.Option(metavar="NAME", help="the load profile")] = "verify",
    users: Annotated[
        int, typer.Option(min=1, metavar="N", help="closed model: concurrent users")
    ] = 32,
    rate: Annotated[
        float | None,
        typer.Option(metavar="RPS", help="open model: requests/s on a fixed schedule"),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="measured time per round, e.g. 30s, 2m (default 6s with --order concurrent,"
            " else 30s)",
            show_default=False,
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="K",
            help="rounds, each running every strategy (default 28 with --order concurrent, else 3)",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="the service's worker processes (default 1; a target's: its {workers}, its"
            " [service].workers by default)",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[int, typer.Option(min=1, metavar="N", help="Locust processes")] = 1,
    out: RunFolder = None,
    ceiling: Annotated[
        bool, typer.Option(help="also run pgbench on the capture transaction, in the same run")
    ] = False,
    database_url: DatabaseUrl = None,
    faults: Annotated[
        bool,
        typer.Option(
            help="kill the service's database backends every --kill-every seconds and restart"
            " the database once per round (on an embedded PostgreSQL each round owns, even if"
            " DATABASE_URL is set); one arm at a time, so not with --order concurrent"
        ),
    ] = False,
    kill_every: Annotated[
        float, typer.Option(metavar="SECONDS", help="with --faults: seconds between kills")
    ] = 3.0,
    target: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="benchmark your own service (a target file, or `reference`): its variants are"
            " the arms, through Locust, its invariants checked after every round",
        ),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            metavar="ORDER",
            help="how a round's strategies run: concurrent (at the same time, each with its own"
            " service and database and an even share of the users), abba, or alternate. Default"
            " concurrent, 28 rounds of 6 s: a for_update A/A's throughput to within +-2% (95%"
            " interval; +-1.25% measured) in about 4 minutes on 2 cores. With --faults:"
            " alternate, 3 rounds of 30 s (one strategy after the other: a difference under"
            " about 20% is noise then)",
            show_default=False,
        ),
    ] = None,
    gate: Annotated[
        bool,
        typer.Option(
            help="the performance gate on each strategy against the first: exit 1 when a"
            " difference's whole 95% interval lies past --max-throughput-drop or"
            " --max-p99-increase"
        ),
    ] = False,
    max_throughput_drop: MaxThroughputDrop = DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    max_p99_increase: MaxP99Increase = DEFAULT_MAX_P99_INCREASE_PCT,
    min_p99_increase_ms: MinP99IncreaseMs = DEFAULT_MIN_P99_INCREASE_MS,
) -> None:
    from racebench.harness.processes import ServiceStartError
    from racebench.harness.target.barrier import BarrierError
    from racebench.harness.target.service import TargetUnreachable
    from racebench.loadtests.bench import run_bench
    from racebench.loadtests.config import bench_plan
    from racebench.loadtests.display import RichObserver
    from racebench.reports.bench_table import print_bench_summary

    chosen, rounds, duration = bench_plan(
        _order(order) if order is not None else None, rounds, duration, faults=faults
    )
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
                faults=faults,
                kill_every_s=kill_every,
                order=chosen,
                target=target,
                progress=progress,
            )
    except (DatabaseError, ValueError, ServiceStartError, TargetUnreachable, BarrierError) as error:
        raise _fail(str(error)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; the service and Locust are stopped", code=130) from None
    print_bench_summary(done.results, done.path)
    code = done.exit_code
    if gate:
        from racebench.reports.gate import Thresholds, paired_gate
        from racebench.reports.summary import summarize
        from racebench.reports.terminal import print_gate

        thresholds = Thresholds(max_throughput_drop, max_p99_increase, min_p99_increase_ms)
        result = paired_gate(summarize(done.results), thresholds)
        print_gate(make_console(stderr=True), result)
        code = code or (0 if result.passed else 1)
    raise typer.Exit(code)


def _order(text: str) -> Order:
    from racebench.loadtests.config import ORDERS

    for order in ORDERS:
        if text == order:
            return order
    raise _fail(f"--order must be one of {', '.join(ORDERS)}, not {text!r}")


@_command(
    "Write table.md, matrix.md and report.html for a run (and compare with a baseline).",
    _nothing,
    "0 the gates held; 1 the run broke the race gate (a safe strategy left violations, or an"
    " unsafe one went uncaught) or, with --baseline, throughput or p99 moved past the"
    " thresholds; 2 RUN_DIR or the baseline is not a readable run.",
)
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", help="a run folder holding results.json, or that results.json"
        ),
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(metavar="RUN_DIR", help="compare against this run (the performance gate)"),
    ] = None,
    max_throughput_drop: MaxThroughputDrop = DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    max_p99_increase: MaxP99Increase = DEFAULT_MAX_P99_INCREASE_PCT,
    min_p99_increase_ms: MinP99IncreaseMs = DEFAULT_MIN_P99_INCREASE_MS,
) -> None:
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


@_command(
    "Explore the interleavings of a scenario's racing transactions, scheduled at the PostgreSQL"
    " wire (racebench's proxy sits between the service and its database): every schedule with"
    " at most --preemptions preemptions, fewest first, or PCT past --max-schedules. Prints"
    " what was achieved; a failing schedule is shrunk, drawn as the SQL each request ran, and"
    " saved for --replay.",
    _scenarios_and_strategies,
    "0 every variant expected to hold held in every schedule, and every one expected to be"
    " caught was; 1 a violation where none was expected, a canary not caught, a broken run or"
    " a harness artifact (a stall the scheduler caused: neither bug nor safe), or (--replay)"
    " a run that did not end as the saved one; " + BAD_INPUT + "; 130 interrupted.",
)
def explore(
    target: Annotated[
        str,
        typer.Option(
            metavar="FILE",
            help="a target file whose service racebench starts (it is handed the proxy's URL"
            " as {database_url}), or `reference`",
        ),
    ] = "reference",
    strategy: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="the target's variants (the reference's: its strategies), a,b or all",
            show_default=False,
        ),
    ] = None,
    scenario: Annotated[
        str, typer.Option(metavar="NAMES", help="scenarios that race captures, a,b")
    ] = "simultaneous",
    preemptions: Annotated[
        int, typer.Option(min=0, metavar="K", help="the preemption bound (CHESS)")
    ] = 2,
    max_schedules: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="past this many bounded schedules, PCT takes over"),
    ] = 400,
    pct_schedules: Annotated[
        int, typer.Option(min=1, metavar="N", help="PCT's schedules, when it takes over")
    ] = 200,
    pct_depth: Annotated[int, typer.Option(min=1, metavar="D", help="PCT's bug depth")] = 2,
    seed: Annotated[int, typer.Option(metavar="N", help="PCT's seed")] = 0,
    canary: Annotated[
        bool, typer.Option(help="the build is known to be bad: a violation must be found")
    ] = False,
    replay: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="run a saved schedule again (from a failing search)"),
    ] = None,
    repeat: Annotated[
        int, typer.Option(min=1, metavar="K", help="with --replay: how many times")
    ] = 1,
    workers: TargetWorkers = None,
    out: RunFolder = None,
    json_path: JsonCopy = None,
    database_url: DatabaseUrl = None,
) -> None:
    from racebench.explore import Search, run_explore, run_replay
    from racebench.harness.explore.behind import CannotExplore
    from racebench.harness.target.service import TargetUnreachable

    try:
        if replay is not None:
            code = run_replay(replay, repeat=repeat, database_url=database_url, workers=workers)
        else:
            code = run_explore(
                target=target,
                strategies=strategy,
                scenarios=scenario,
                search=Search(preemptions, max_schedules, pct_schedules, pct_depth, seed),
                canary=canary,
                database_url=database_url,
                workers=workers,
                out=out,
                json_path=json_path,
            )
    except (DatabaseError, ValueError, TargetUnreachable, CannotExplore) as error:
        raise _fail(str(error)) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; the proxy, the service and its connections are stopped", 130
        ) from None
    raise typer.Exit(code)


@_command(
    "Read the service's own SQL and point at the unguarded read-then-write, before any race is"
    " run: its service started behind racebench's proxy, each request type sent once (verify,"
    " the capture event, the failure event), every transaction's read and write sets read with"
    " PostgreSQL's own parser; or a PostgreSQL statement log (--log). The hints come ranked,"
    " each with the statements that prove it, with the barrier tables and draft invariants the"
    " writes suggest. --confirm forces each hint with racebench explore (its tables gated) and"
    " marks it confirmed (with the failing schedule), refuted or unsettled.",
    _strategies,
    "0 every variant as expected (a canary shows a hint, with --confirm a confirmed one in its"
    " top 3; any other shows none, with --confirm none that is not refuted); 1 otherwise; "
    + BAD_INPUT
    + "; 130 interrupted.",
)
def hints(
    target: Annotated[
        str,
        typer.Option(
            metavar="FILE",
            help="a target file whose service racebench starts, or `reference`",
        ),
    ] = "reference",
    strategy: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="the target's variants (the reference's: its strategies), a,b or all",
            show_default=False,
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="a PostgreSQL log written with log_statement = 'all' (instead of a target)",
        ),
    ] = None,
    log_prefix: Annotated[
        str,
        typer.Option(metavar="PREFIX", help="the server's log_line_prefix (SHOW log_line_prefix)"),
    ] = "%m [%p] ",
    schema_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="with --log: the database whose unique indexes and keys to read",
            show_default=False,
        ),
    ] = None,
    confirm: Annotated[
        bool, typer.Option(help="force each hint (racebench explore) and say what it showed")
    ] = False,
    budget: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="--confirm: schedules (or runs) per hint"),
    ] = 60,
    preemptions: Annotated[
        int, typer.Option(min=0, metavar="K", help="--confirm: the preemption bound")
    ] = 2,
    canary: Annotated[
        bool, typer.Option(help="the build is known to be bad: a hint must be found")
    ] = False,
    sets: Annotated[
        bool, typer.Option(help="also print each transaction's read and write sets")
    ] = False,
    workers: TargetWorkers = None,
    out: RunFolder = None,
    json_path: JsonCopy = None,
    database_url: DatabaseUrl = None,
) -> None:
    from racebench.harness.explore.behind import CannotExplore
    from racebench.harness.hints.statement_log import LogFormatError
    from racebench.harness.target.service import TargetUnreachable
    from racebench.hints import Confirming, run_hints

    try:
        code = run_hints(
            target=target,
            strategies=strategy,
            log=log,
            log_prefix=log_prefix,
            schema_url=schema_url,
            confirming=Confirming(budget, preemptions) if confirm else None,
            canary=canary,
            database_url=database_url,
            workers=workers,
            out=out,
            json_path=json_path,
            show_sets=sets,
        )
    except (DatabaseError, ValueError, TargetUnreachable, CannotExplore, LogFormatError) as error:
        raise _fail(str(error)) from None
    except OSError as error:  # --out or --json
        raise _fail(f"{error.filename or ''}: {error.strerror or error}") from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; the proxy, the service and its connections are stopped", 130
        ) from None
    raise typer.Exit(code)


@_command(
    "Relay PostgreSQL connections to the upstream server, recording each statement, until"
    " Ctrl-C or SIGTERM (harness/explore/proxy.py); prints the URL to connect to and, at"
    " exit, how many connections and statements went through. With a command after `--`"
    " (and --upstream-url), run it with DATABASE_URL pointed at the proxy until it exits"
    " (RACEBENCH_PROXY_BYPASS=1: straight to the database, for an A/B of the proxy's cost).",
    _nothing,
    "0 stopped (Ctrl-C, SIGTERM); with a command, the command's own; 2 a bad address, or the"
    " listen address is taken.",
)
def proxy(
    listen: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="address to listen on (port 0: any free)")
    ] = "127.0.0.1:6432",
    upstream: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="the PostgreSQL server")
    ] = "127.0.0.1:5432",
    upstream_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="with a command: the database it uses, as postgresql://... (the proxy"
            " listens on a free port)",
        ),
    ] = None,
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- COMMAND ...]", help="run this behind the proxy"),
    ] = None,
) -> None:
    import asyncio

    from racebench.harness.explore.front import fast_loop
    from racebench.harness.explore.proxy import Proxy, parse_address, serve

    if command:
        from racebench.harness.explore.front import run_behind

        if upstream_url is None:
            raise _fail("a command behind the proxy needs --upstream-url postgresql://...")
        try:
            with asyncio.Runner(loop_factory=fast_loop()) as runner:
                code = runner.run(run_behind(upstream_url, command))
        except (ValueError, DatabaseError, OSError) as error:
            raise _fail(str(error)) from None
        raise typer.Exit(code if code >= 0 else 128 - code)
    try:
        listen_at, upstream_at = parse_address(listen), parse_address(upstream)
    except ValueError as error:
        raise _fail(str(error)) from None

    def started(running: Proxy) -> None:
        url = running.url_for(f"postgresql://{upstream_at[0]}:{upstream_at[1]}")
        typer.echo(f"racebench proxy: listening on {url} (upstream {upstream})")

    try:
        with asyncio.Runner(loop_factory=fast_loop()) as runner:
            stopped = runner.run(serve(listen_at, upstream_at, started))
    except OSError as error:
        raise _fail(f"cannot listen on {listen}: {error}") from None
    typer.echo(
        f"racebench proxy: {stopped.connection_count} connections,"
        f" {stopped.statement_count} statements"
    )


@_command(
    "The main job: the race matrix, a short benchmark of none vs for_update, the report.",
    _nothing,
    f"0 every stage ran and the race gate held; 1 a stage failed; {BAD_INPUT}.",
)
def demo(
    out: RunFolder = None,
    duration: Annotated[str, typer.Option(metavar="TIME", help="benchmark time per round")] = (
        "6s"
    ),
    database_url: DatabaseUrl = None,
) -> None:
    from racebench.demo import run_demo

    try:
        code = run_demo(out=out, duration=duration, database_url=database_url)
    except (DatabaseError, ValueError) as error:
        raise _fail(str(error)) from None
    raise typer.Exit(code)


target_app = typer.Typer(
    help="Check a target file (your own service, described for racebench).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(target_app, name="target")


@target_app.command(
    "check",
    help="Real payments against the target: a verify and a webhook, each alone (what each"
    " answered, which tables it wrote, whether it captured), then one forced race; says in plain"
    " words what is wrong, and which barrier_tables to name. Exit codes: 0 every step worked; 1"
    " a step failed (a rejected signature, a webhook the service ignored, a missing table, a"
    " query that does not parse, a lock the user cannot take, barrier tables that force"
    " nothing); 2 a bad target file, or the service or its database unreachable.",
)
def target_check(
    file: Annotated[str, typer.Argument(metavar="FILE", help="a target file, or `reference`")],
    database_url: DatabaseUrl = None,
) -> None:
    import asyncio

    from racebench.harness.target.check import check_target
    from racebench.harness.target.file import load

    try:
        spec = load(file)
    except ValueError as error:
        raise _fail(str(error)) from None
    steps, reachable = asyncio.run(check_target(spec, database_url))
    out = make_console()
    for step in steps:
        mark = "[green]ok[/]  " if step.ok else "[bold red]FAIL[/]"
        words = escape(f"{step.name}: {step.words}")
        out.print(f"{mark} {words}", highlight=False, soft_wrap=True)
    if not reachable:
        raise typer.Exit(2)
    raise typer.Exit(0 if all(s.ok for s in steps) else 1)


@target_app.command(
    "init",
    help="A first target file from a running service's transcript: the skeleton FILE's"
    " service, payment and requests (barrier_tables and [[invariants]] may be left out),"
    " driven once through racebench's proxy; the barrier tables (what the captures write after"
    " their first read) and draft invariants (what the writes imply) written in. Exit codes: 0"
    " written; 2 a bad skeleton, or the service or its database unreachable; 130 interrupted.",
)
def target_init(
    file: Annotated[str, typer.Argument(metavar="FILE", help="a target file (a skeleton)")],
    strategy: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="the build to read, when the service takes {variant}",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="where to write it (default: FILE's stem.init.toml)"),
    ] = None,
    workers: TargetWorkers = None,
    database_url: DatabaseUrl = None,
) -> None:
    from racebench.harness.explore.behind import CannotExplore
    from racebench.harness.target.service import TargetUnreachable
    from racebench.hints import run_init

    try:
        code = run_init(file, variant=strategy, out=out, database_url=database_url, workers=workers)
    except (DatabaseError, ValueError, TargetUnreachable, CannotExplore) as error:
        raise _fail(str(error)) from None
    except OSError as error:  # --out
        raise _fail(f"{error.filename or out}: {error.strerror or error}") from None
    except KeyboardInterrupt:
        raise _fail("interrupted; the service is stopped", 130) from None
    raise typer.Exit(code)


@target_app.command(
    "sends",
    help="What racebench sends a target in each scenario: the launches, the requests (checkout"
    " callbacks, webhook events), and how each launch is held; markdown, from the scenarios'"
    " own scripts (docs/targets.md holds it). Exit codes: 0; 2 a bad target file.",
)
def target_sends(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="a target file (default: reference)")
    ] = "reference",
) -> None:
    import asyncio

    from racebench.harness.target.file import load
    from racebench.scenarios.sends import markdown

    try:
        spec = load(file)
    except ValueError as error:
        raise _fail(str(error)) from None
    typer.echo(asyncio.run(markdown(spec)), nl=False)


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
