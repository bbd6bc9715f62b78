"""`racebench explore`: a scenario's racing transactions scheduled at the PostgreSQL wire, on
the reference service or any target file whose service racebench starts (harness/explore/).

For each variant and scenario: the bounded search (every schedule with at most --preemptions
preemptions, fewest first), or PCT when the bounded space is larger than --max-schedules. A
variant expected to be caught stops at its first violation; any other is searched to the end.
A failing schedule is shrunk, drawn (the actual SQL of each request's transactions, in the order
it ran, with the invariant's evidence), saved beside results.json, and replays with
`racebench explore --replay FILE`.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from racebench.console import console as make_console
from racebench.harness.database import parse_url
from racebench.harness.explore.behind import Behind, behind_proxy
from racebench.harness.explore.explorer import (
    DEFAULT_BOUND,
    DEFAULT_MAX_SCHEDULES,
    DEFAULT_PCT_DEPTH,
    DEFAULT_PCT_SCHEDULES,
    Explorer,
    SavedSchedule,
    ScheduleRun,
    SearchResult,
    draw,
    explore,
    result_line,
    schedule_timeline,
)
from racebench.harness.explore.front import fast_loop
from racebench.harness.explore.scheduler import Prefix
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.file import load as load_target
from racebench.harness.target.matrix import choose_variants, variant_arg
from racebench.harness.target.race import TargetScript
from racebench.names import pick
from racebench.results import (
    DEFAULT_RUNS_DIR,
    ExploreFailure,
    ExploreResult,
    Invariant,
    Results,
    new_run_id,
)
from racebench.scenarios import SCENARIOS

T = TypeVar("T")
DEFAULT_SCENARIO = "simultaneous"  # client against webhook on one payment
SCHEDULES_FOLDER = "schedules"


@dataclass(frozen=True)
class Search:
    """What to explore, and how far."""

    bound: int = DEFAULT_BOUND
    max_schedules: int = DEFAULT_MAX_SCHEDULES
    pct_schedules: int = DEFAULT_PCT_SCHEDULES
    pct_depth: int = DEFAULT_PCT_DEPTH
    seed: int = 0


class ExploreProgress:
    """Schedules run, violations found, on stderr: a live line on a terminal, else a line at
    the end of each search."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar: Progress | None = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[found]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def search(self, title: str, total: int) -> _Task:
        return _Task(self, title, total)


class _Task:
    def __init__(self, owner: ExploreProgress, title: str, total: int) -> None:
        self.owner, self.title, self.total = owner, title, total
        self._id = None
        if owner._bar is not None:
            owner._bar.start()
            self._id = owner._bar.add_task(title, total=total, found="")

    def __call__(self, result: SearchResult) -> None:
        bar = self.owner._bar
        if bar is not None and self._id is not None:
            found = f"{result.schedules} schedules, {result.violations} violation(s)"
            bar.update(self._id, completed=min(result.schedules, self.total), found=found)

    def close(self) -> None:
        bar = self.owner._bar
        if bar is not None and self._id is not None:
            bar.remove_task(self._id)
            bar.stop()


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM cancelling the work at its next await (as Ctrl-C does), so
    that the proxy, the service and the database racebench made are stopped in order; then
    KeyboardInterrupt, as for Ctrl-C."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        handled = threading.current_thread() is threading.main_thread()
        if handled:  # signal handlers belong to the main thread
            loop.add_signal_handler(signal.SIGTERM, stop)
        try:
            return await work
        except asyncio.CancelledError:
            if stopped:
                raise KeyboardInterrupt("stopped by SIGTERM") from None
            raise
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGTERM)

    with asyncio.Runner(loop_factory=fast_loop()) as runner:
        return runner.run(main())


def _scripts(spec: TargetSpec, scenarios: str) -> dict[str, TargetScript]:
    names = pick(scenarios, list(SCENARIOS), "scenario")
    scripts: dict[str, TargetScript] = {}
    for name in names:
        scenario = SCENARIOS[name]
        found = scenario.on_target(spec)
        if isinstance(found, str):
            raise ValueError(f"--scenario {name}: does not run on {spec.name}: {found}")
        if not scenario.catches_races:
            raise ValueError(
                f"--scenario {name}: it sends one request at a time (nothing to interleave); "
                "explore a scenario that races captures"
            )
        scripts[name] = found
    return scripts


def run_explore(
    *,
    target: str = "reference",
    strategies: str | None = None,
    scenarios: str = DEFAULT_SCENARIO,
    search: Search = Search(),
    canary: bool = False,
    database_url: str | None = None,
    workers: int | None = None,
    out: Path | None = None,
    json_path: Path | None = None,
) -> int:
    """Explore each variant x scenario; write results.json (and each failing schedule); 0 iff
    every variant expected to hold held in every schedule and every one expected to be caught
    was (a harness artifact is never a pass)."""
    spec = load_target(target)
    scripts = _scripts(spec, scenarios)
    variants = choose_variants(spec, strategies or "all")
    run_id = new_run_id("explore")
    run_dir = out or DEFAULT_RUNS_DIR / run_id
    out_console, err = make_console(), make_console(stderr=True)
    progress = ExploreProgress(err)
    found: list[ExploreResult] = []
    started = time.perf_counter()
    for variant in variants:
        for name, script in scripts.items():
            expected = (
                "race"
                if canary or variant.expected(name, SCENARIOS[name].catches_races) == "race"
                else "safe"
            )
            result = run_async(
                _explore_one(
                    spec,
                    variant_arg(spec, variant),
                    name,
                    script,
                    search=search,
                    stop_at_first=expected == "race",
                    database_url=database_url,
                    workers=workers,
                    progress=progress,
                    run_dir=run_dir,
                )
            )
            entry = _entry(spec, variant.name, name, expected, search, result)
            found.append(entry)
            _show(out_console, entry, result.failure, spec)
    results = Results(run_id=run_id, explore=found)
    results.environment["target"] = {"name": spec.name, "path": str(spec.path)}
    path = results.write(run_dir, copy_to=json_path)
    failed = [e for e in found if not e.passed]
    out_console.print(
        f"{len(found) - len(failed)}/{len(found)} explorations as expected in "
        f"{time.perf_counter() - started:.1f} s; results: {path}",
        highlight=False,
    )
    return 1 if failed else 0


@dataclass
class _Explored:
    search: SearchResult
    failure: ScheduleRun | None
    schedule_file: Path | None


async def _explore_one(
    spec: TargetSpec,
    variant: str | None,
    scenario: str,
    script: TargetScript,
    *,
    search: Search,
    stop_at_first: bool,
    database_url: str | None,
    workers: int | None,
    progress: ExploreProgress,
    run_dir: Path,
) -> _Explored:
    task = progress.search(f"explore {scenario} x {variant or spec.name}", search.max_schedules)
    try:
        found = await explore(
            spec,
            variant,
            script,
            bound=search.bound,
            max_schedules=search.max_schedules,
            pct_schedules=search.pct_schedules,
            pct_depth=search.pct_depth,
            seed=search.seed,
            stop_at_first=stop_at_first,
            database_url=database_url,
            workers=workers,
            progress=task,
            announce=lambda b: progress.console.print(_where(scenario, variant, spec, b)),
        )
    finally:
        task.close()
    saved = None
    if found.failure is not None:
        saved = save_schedule(spec, variant, scenario, found.failure, run_dir)
    return _Explored(found.search, found.failure, saved)


def _where(scenario: str, variant: str | None, spec: TargetSpec, behind: Behind) -> str:
    url = parse_url(behind.session.database.url)
    return (
        f"explore {scenario} x {variant or spec.name}: {spec.name}'s service at "
        f"{behind.session.target.base_url}, its database {url.database} behind racebench's "
        f"proxy on {behind.proxy.listen_host}:{behind.proxy.port}"
    )


def save_schedule(
    spec: TargetSpec,
    variant: str | None,
    scenario: str,
    run: ScheduleRun,
    run_dir: Path,
    *,
    evidence: str | None = None,
    gate: Sequence[str] = (),
    gate_reads: bool = False,
    invariants: Sequence[Invariant] = (),
    prefix: str = "",
) -> Path:
    """A failing schedule, under schedules/ in the run folder, for --replay. `gate`: the only
    tables whose statements were decision points (racebench hints --confirm)."""
    folder = run_dir / SCHEDULES_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    saved = SavedSchedule(
        target=str(spec.path),
        variant=variant,
        scenario=scenario,
        choices=run.choices,
        preemptions=run.preemptions,
        verdict=run.verdict,
        evidence=evidence or result_line(run),
        gate=list(gate),
        gate_reads=gate_reads,
        invariants=[{"code": i.code, "name": i.name, "sql": i.sql} for i in invariants],
    )
    name = f"{prefix}{scenario}-{variant or spec.name}-{saved.id}.json"
    return saved.write(folder / name)


def _entry(
    spec: TargetSpec,
    variant: str,
    scenario: str,
    expected: str,
    search: Search,
    explored: _Explored,
) -> ExploreResult:
    result = explored.search
    caught = result.violations > 0
    clean = not result.errors and not result.artifacts
    passed = caught if expected == "race" else (not caught and clean)
    failure = None
    if explored.failure is not None and explored.schedule_file is not None:
        run = explored.failure
        failure = ExploreFailure(
            schedule_id=run.id,
            choices=run.choices,
            preemptions=run.preemptions,
            decisions=len(run.decisions),
            schedule_file=str(explored.schedule_file),
            violations=dict(run.outcome.check.counts),
            result=result_line(run),
            timeline=schedule_timeline(run),
        )
    return ExploreResult(
        target=spec.name,
        variant=variant,
        scenario=scenario,
        search=result.mode,
        preemption_bound=search.bound,
        schedules=result.schedules,
        complete=result.complete,
        held=result.held,
        violations=result.violations,
        errors=result.errors,
        artifacts=result.artifacts,
        expected="race" if expected == "race" else "safe",
        passed=passed,
        guarantee=result.guarantee(),
        seconds=round(result.seconds, 3),
        pct_depth=result.depth if result.mode == "pct" else None,
        seed=result.seed if result.mode == "pct" else None,
        failure=failure,
    )


def _show(
    console: Console, entry: ExploreResult, failure: ScheduleRun | None, spec: TargetSpec
) -> None:
    word = "ok  " if entry.passed else "FAIL"
    want = "must be caught" if entry.expected == "race" else "must hold"
    per = entry.seconds / entry.schedules if entry.schedules else 0.0
    console.print(
        f"{word} {entry.scenario} x {entry.variant} ({want}): {entry.guarantee}; "
        f"{entry.seconds:.1f} s, {1000 * per:.0f} ms a schedule",
        highlight=False,
    )
    if failure is not None and entry.failure is not None:
        console.print(draw(failure, f"{entry.scenario} x {entry.variant}"), highlight=False)
        console.print(
            f"replay: racebench explore --replay {entry.failure.schedule_file}", highlight=False
        )


def run_replay(
    schedule: Path,
    *,
    repeat: int = 1,
    database_url: str | None = None,
    workers: int | None = None,
) -> int:
    """Run a saved schedule `repeat` times; 0 iff every run ended as the saved one did."""
    saved = SavedSchedule.read(schedule)
    spec = load_target(saved.target, skeleton=bool(saved.invariants))
    if saved.invariants:  # checked with racebench hints' drafts: the file has none
        drafted = [
            Invariant(code=i["code"], name=i["name"], sql=i["sql"]) for i in saved.invariants
        ]
        spec = replace(spec, invariants=(*spec.invariants, *drafted))
    script = _scripts(spec, saved.scenario)[saved.scenario]
    console = make_console()
    runs = run_async(
        _replay(spec, saved, script, repeat=repeat, database_url=database_url, workers=workers)
    )
    same = [r for r in runs if r.verdict == saved.verdict]
    last = runs[-1]
    console.print(draw(last, f"replay {saved.scenario} x {saved.variant or spec.name}"))
    diverged = sum(r.diverged > 0 for r in runs)
    console.print(
        f"{len(same)}/{len(runs)} runs of schedule {saved.id} ended as saved "
        f"({saved.verdict}: {saved.evidence})"
        + (f"; {diverged} diverged from the saved choices" if diverged else ""),
        highlight=False,
    )
    return 0 if len(same) == len(runs) else 1


async def _replay(
    spec: TargetSpec,
    saved: SavedSchedule,
    script: TargetScript,
    *,
    repeat: int,
    database_url: str | None,
    workers: int | None,
) -> Sequence[ScheduleRun]:
    async with behind_proxy(
        spec, saved.variant, database_url=database_url, workers=workers
    ) as behind:
        behind.launcher.focus = saved.focus
        explorer = Explorer(behind.session, behind.launcher, script)
        return [await explorer.run(Prefix(saved.choices)) for _ in range(repeat)]


__all__ = [
    "SCHEDULES_FOLDER",
    "ExploreProgress",
    "Search",
    "run_async",
    "run_explore",
    "run_replay",
    "save_schedule",
]
