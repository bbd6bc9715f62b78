"""`racebench race`: every scenario x every strategy (x mode), a verdict per cell, one exit code.

A cell is (scenario, strategy, mode), run `repeat` times from clean tables. Its verdict is
race_detected if any run left a violation, error if a run broke (a 5xx, a stalled schedule, a
scenario's own expectation), safe otherwise. A cell passes when it matches what its scenario
expects of that strategy in that mode; `race` exits 0 only if every cell passed.

In-process cells share one app per strategy. http cells need `racebench serve --workers 2` per
strategy; the next service starts while the current cells run, because starting uvicorn
workers (imports, mostly) costs more than the cells themselves.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.database import provision
from harness.invariants import CheckResult
from harness.results import DEFAULT_RUNS_DIR, Mode, RaceResult, Results, new_run_id
from harness.runner import Monitor, RunOutcome, run_once
from harness.service_process import ServiceStartError
from harness.targets import HttpTarget, InProcessTarget, Target
from harness.timeline import render
from reference_service.strategies import STRATEGY_NAMES
from scenarios import SCENARIO_NAMES, SCENARIOS, Scenario

MODES: tuple[Mode, ...] = ("in_process", "http")
# Seeds drawn when none is given; small enough to type back in.
MAX_RANDOM_SEED = 1_000_000

# CI logs are not terminals; rich would wrap the matrix at 80 columns there.
LOG_WIDTH = 160
stderr = Console(stderr=True)
stdout = Console(width=None if Console().is_terminal else LOG_WIDTH)


@dataclass(frozen=True)
class Cell:
    scenario: Scenario
    strategy: str
    mode: Mode

    @property
    def expected(self) -> str:
        return self.scenario.expected(self.strategy, self.mode)

    @property
    def title(self) -> str:
        return f"{self.scenario.name} x {self.strategy} ({self.mode})"


@dataclass
class CellRuns:
    """The runs of one cell, as they come in."""

    cell: Cell
    outcomes: list[RunOutcome] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    duration_ms: float = 0.0
    schedules: bool = True  # were the scenarios' schedules played (--no-schedule: False)

    @property
    def caught(self) -> int:
        return sum(1 for o in self.outcomes if o.caught)

    def result(self) -> RaceResult:
        violations: dict[str, int] = {}
        for outcome in self.outcomes:
            for code, count in outcome.violations.items():
                violations[code] = violations.get(code, 0) + count
        errors = [e for o in self.outcomes for e in o.errors]
        verdict = "race_detected" if self.caught else ("error" if errors else "safe")
        index = self._telling_run()
        return RaceResult(
            scenario=self.cell.scenario.name,
            strategy=self.cell.strategy,
            mode=self.cell.mode,
            runs=len(self.outcomes),
            expected=self.cell.expected,  # type: ignore[arg-type]
            verdict=verdict,  # type: ignore[arg-type]
            violations=violations,
            duration_ms=round(self.duration_ms, 1),
            timeline=self.outcomes[index].timeline if self.outcomes else [],
            error="; ".join(dict.fromkeys(errors)) or None,
            seed=self.seeds[index] if self.seeds else None,
        )

    def _telling_run(self) -> int:
        """The run whose timeline tells the cell's story: a failing run first, else a catch."""
        for i, outcome in enumerate(self.outcomes):
            wrong = outcome.caught if self.cell.expected == "safe" else not outcome.caught
            if wrong or outcome.errors:
                return i
        for i, outcome in enumerate(self.outcomes):
            if outcome.caught:
                return i
        return 0


def _pick(value: str, known: Sequence[str], what: str) -> list[str]:
    if value == "all":
        return list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(unknown)!r}; choose from: {', '.join(known)}")
    return names


def plan(strategies: str, scenarios: str, mode: str) -> list[Cell]:
    """The cells to run: each scenario in its own modes (auto), or in the one mode asked."""
    chosen_strategies = _pick(strategies, STRATEGY_NAMES, "strategy")
    chosen_scenarios = [SCENARIOS[n] for n in _pick(scenarios, SCENARIO_NAMES, "scenario")]
    if mode not in ("auto", *MODES):
        raise ValueError(f"unknown mode {mode!r}; choose from: auto, in_process, http")
    cells: list[Cell] = []
    for scenario in chosen_scenarios:
        modes: tuple[Mode, ...] = scenario.modes if mode == "auto" else (mode,)  # type: ignore[assignment]
        if mode == "http" and "http" not in scenario.modes:
            raise ValueError(f"scenario {scenario.name} runs in-process only")
        for m in modes:
            cells.extend(Cell(scenario, s, m) for s in chosen_strategies)
    return cells


RunHook = Callable[[Cell, RunOutcome], None]


async def run_cells(
    cells: Sequence[Cell],
    database_url: str,
    *,
    repeat: int = 1,
    seed: int | None = None,
    use_schedules: bool = True,
    on_run: RunHook | None = None,
) -> list[CellRuns]:
    """Run every cell `repeat` times; jitter at the race points when `seed` is given."""
    runs = {cell: CellRuns(cell, schedules=use_schedules) for cell in cells}
    by_target: dict[tuple[Mode, str], list[Cell]] = {}
    for cell in cells:
        by_target.setdefault((cell.mode, cell.strategy), []).append(cell)
    http_strategies = [s for (m, s) in by_target if m == "http"]
    async with Monitor.open(database_url) as monitor:
        # The first service starts now, while the in-process cells run.
        services = _Services([_http_opener(database_url, s) for s in http_strategies])
        try:
            for (mode, strategy), group in by_target.items():
                args = (monitor, runs, repeat, seed, use_schedules, on_run)
                if mode == "in_process":
                    async with InProcessTarget.open(database_url, strategy) as in_process:
                        await _run_group(group, in_process, *args)
                else:
                    try:
                        http = await services.next()
                    except (ServiceStartError, OSError) as error:
                        _record_error(group, runs, f"racebench serve did not start: {error}")
                        continue
                    await _run_group(group, http, *args)
        finally:
            await services.aclose()
    return [runs[cell] for cell in cells]


def _record_error(group: Sequence[Cell], runs: dict[Cell, CellRuns], message: str) -> None:
    for cell in group:
        runs[cell].outcomes.append(RunOutcome(CheckResult(True, []), [], [message]))
        runs[cell].seeds.append(None)


def _http_opener(
    database_url: str, strategy: str
) -> Callable[[], AbstractAsyncContextManager[HttpTarget]]:
    return lambda: HttpTarget.open(database_url, strategy)


async def _run_group(
    group: Sequence[Cell],
    target: Target,
    monitor: Monitor,
    runs: dict[Cell, CellRuns],
    repeat: int,
    seed: int | None,
    use_schedules: bool,
    on_run: RunHook | None,
) -> None:
    for cell in group:
        cell_runs = runs[cell]
        started = time.perf_counter()
        for i in range(repeat):
            run_seed = None if seed is None else seed + i
            jitter = None if run_seed is None else f"{run_seed}|{cell.title}"
            outcome = await run_once(
                cell.scenario.script,
                target,
                monitor,
                use_schedules=use_schedules,
                jitter_seed=jitter,
            )
            cell_runs.outcomes.append(outcome)
            cell_runs.seeds.append(run_seed)
            if on_run is not None:
                on_run(cell, outcome)
        cell_runs.duration_ms = (time.perf_counter() - started) * 1000.0


class _Services:
    """http targets in order: the next one starts while the current one is in use, and a
    finished one stops in the background; `aclose()` waits for all of them."""

    def __init__(
        self, openers: Sequence[Callable[[], AbstractAsyncContextManager[HttpTarget]]]
    ) -> None:
        self._openers = list(openers)
        self._starting: list[
            tuple[AbstractAsyncContextManager[HttpTarget], asyncio.Task[HttpTarget]]
        ] = []
        self._current: AbstractAsyncContextManager[HttpTarget] | None = None
        self._closing: list[asyncio.Task[Any]] = []
        self._start_next()

    def _start_next(self) -> None:
        if self._openers:
            manager = self._openers.pop(0)()
            self._starting.append((manager, asyncio.create_task(manager.__aenter__())))

    def _close(self, manager: AbstractAsyncContextManager[HttpTarget]) -> None:
        self._closing.append(asyncio.create_task(manager.__aexit__(None, None, None)))

    async def next(self) -> HttpTarget:
        """The next target; raises if it failed to start (the ones after it still come)."""
        if self._current is not None:
            self._close(self._current)
            self._current = None
        manager, starting = self._starting.pop(0)
        self._start_next()
        target = await starting  # if this raises, the manager cleaned up after itself
        self._current = manager
        return target

    async def aclose(self) -> None:
        if self._current is not None:
            self._close(self._current)
        for manager, starting in self._starting:
            try:
                await starting
            except Exception:
                continue  # it never started: nothing to stop
            self._close(manager)
        await asyncio.gather(*self._closing, return_exceptions=True)


# -- the command ---------------------------------------------------------------------------


def run_race(
    *,
    strategies: str = "all",
    scenarios: str = "all",
    repeat: int = 1,
    seed: int | None = None,
    json_path: Path | None = None,
    out: Path | None = None,
    junit: Path | None = None,
    show_timeline: bool = False,
    mode: str = "auto",
    database_url: str | None = None,
    schedules: bool = True,
) -> int:
    """Run the matrix, show it, write results.json (and JUnit); 0 iff every cell passed."""
    cells = plan(strategies, scenarios, mode)
    if seed is None and repeat > 1:
        seed = secrets.randbelow(MAX_RANDOM_SEED)
    run_id = new_run_id("race")
    started = time.perf_counter()
    with provision(database_url) as db, _progress(len(cells) * repeat) as advance:
        stderr.print(
            f"racebench race: {len(cells)} cells x {repeat} run(s)"
            f"{f', seed {seed}' if seed is not None else ''} on {db.redacted}",
            highlight=False,
            soft_wrap=True,
        )
        cell_runs = asyncio.run(
            run_cells(
                cells,
                db.url,
                repeat=repeat,
                seed=seed,
                use_schedules=schedules,
                on_run=lambda cell, outcome: advance(cell),
            )
        )
    wall_s = time.perf_counter() - started
    results = Results(run_id=run_id, race=[c.result() for c in cell_runs])
    run_dir = out or DEFAULT_RUNS_DIR / run_id
    path = results.write(run_dir)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, json_path)
    if junit is not None:
        write_junit(cell_runs, junit)
    if show_timeline:
        for c in cell_runs:
            result = c.result()
            text = render(result.timeline, c.cell.title)
            stdout.print(text, highlight=False, markup=False, soft_wrap=True)
            stdout.print()
    stdout.print(matrix_table(cell_runs))
    failed = [c for c in cell_runs if not c.result().passed]
    for c in failed:
        stderr.print(f"[bold red]FAIL[/] {_explain(c)}", highlight=False)
    stderr.print(
        f"{len(cell_runs) - len(failed)}/{len(cell_runs)} cells as expected in {wall_s:.1f} s; "
        f"results: {path}",
        highlight=False,
    )
    return 1 if failed else 0


def _explain(c: CellRuns) -> str:
    """Why a cell failed: the evidence of its first wrong run, and how to run that run again."""
    result = c.result()
    lines = [f"{c.cell.title}: expected {result.expected}, got {result.verdict}"]
    if result.expected == "race":
        lines.append(f"caught in {c.caught}/{len(c.outcomes)} runs")
    for outcome, run_seed in zip(c.outcomes, c.seeds, strict=True):
        wrong = outcome.caught if result.expected == "safe" else not outcome.caught
        if wrong or outcome.errors:
            if outcome.caught:
                lines.append(outcome.check.message())
            lines.extend(outcome.errors[:3])
            if run_seed is not None:
                lines.append(_reproduce(c, run_seed))
            break
    return "\n    ".join(lines)


def _reproduce(c: CellRuns, run_seed: int) -> str:
    """The command that replays one run: same cell, same jitter (the seed is per run)."""
    cell = c.cell
    return (
        f"reproduce (seed {run_seed}): racebench race --scenario {cell.scenario.name} "
        f"--strategy {cell.strategy} --mode {cell.mode} --seed {run_seed}"
        f"{'' if c.schedules else ' --no-schedule'}"
    )


def _cell_text(c: CellRuns) -> str:
    """Short: `caught` / `safe`, with counts only when a cell ran more than once."""
    result = c.result()
    n = len(c.outcomes)
    count = f" {c.caught}/{n}" if n > 1 else ""
    if result.verdict == "error" or (result.error and not c.caught):
        return "[yellow]ERROR[/]"
    if result.expected == "race":
        if c.caught == n:
            return f"[green]caught{count}[/]"
        # Caught at least once passes the cell; anything short of every run is worth a look.
        return f"[yellow]caught{count}[/]" if c.caught else f"[red]MISSED{count}[/]"
    if c.caught:
        return f"[bold red]RACE{count}[/]"
    return f"[green]safe{count}[/]"


def matrix_table(cell_runs: Sequence[CellRuns]) -> Table:
    """Scenario rows, strategy columns; a cell run in both modes shows both."""
    strategies = list(dict.fromkeys(c.cell.strategy for c in cell_runs))
    table = Table(title="racebench race: scenario x strategy (http: 2 worker processes)")
    table.add_column("scenario", no_wrap=True)
    for strategy in strategies:
        table.add_column(strategy, no_wrap=True)
    rows: dict[str, dict[str, list[str]]] = {}
    for c in cell_runs:
        text = _cell_text(c)
        if c.cell.mode == "http":
            text = f"http {text}"
        rows.setdefault(c.cell.scenario.name, {}).setdefault(c.cell.strategy, []).append(text)
    for scenario, by_strategy in rows.items():
        table.add_row(scenario, *("\n".join(by_strategy.get(s, ["-"])) for s in strategies))
    return table


def write_junit(cell_runs: Sequence[CellRuns], path: Path) -> None:
    """One testcase per cell; a failure carries the evidence, an error the error."""
    suite = ET.Element("testsuite", name="racebench.race", tests=str(len(cell_runs)))
    failures = errors = 0
    for c in cell_runs:
        result = c.result()
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"racebench.race.{c.cell.scenario.name}",
            name=f"{c.cell.strategy}[{c.cell.mode}]",
            time=f"{result.duration_ms / 1000:.3f}",
        )
        if result.passed:
            continue
        if result.verdict == "error" and result.expected == "safe":
            errors += 1
            ET.SubElement(case, "error", message=result.error or "error").text = _explain(c)
        else:
            failures += 1
            message = f"expected {result.expected}, got {result.verdict}"
            ET.SubElement(case, "failure", message=message).text = _explain(c)
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


class _progress:
    """A rich progress bar over all runs, on stderr; `advance(cell)` counts one run."""

    def __init__(self, total: int) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        )
        self._task = self._bar.add_task("race", total=total)

    def __enter__(self) -> Callable[[Cell], None]:
        self._bar.start()

        def advance(cell: Cell) -> None:
            self._bar.update(self._task, advance=1, description=cell.title)

        return advance

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()


__all__ = ["Cell", "CellRuns", "plan", "run_cells", "run_race"]
