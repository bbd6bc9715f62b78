"""`racebench race`: every scenario x every strategy (x mode), a verdict per cell, one exit code.

A cell is (scenario, strategy, mode), run `repeat` times from clean tables. Its verdict is
race_detected if any run left a violation, error if a run broke (an answer the request did not
expect, a schedule that did not happen, a scenario's own expectation), safe otherwise. A cell
passes when it matches what its scenario expects of that strategy in that mode; `race` exits 0
only if every cell passed.

In-process cells share one app per strategy. http cells need `racebench serve --workers
HTTP_WORKERS` per strategy; the next service starts while the current cells run, because
starting uvicorn workers (imports, mostly) costs more than the cells themselves.

Planning, running and verdicts live here. The scenarios come in as input (racebench.scenarios
has the registry); showing the results (the table, progress, the explanation of a failure,
JUnit) is harness/race_display.py; the command that ties them together is racebench/race.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, cast

from racebench.harness.cells import Cell, CellRuns, RunOutcome
from racebench.harness.gateway import Gateway
from racebench.harness.invariants import CheckResult
from racebench.harness.locks import Monitor
from racebench.harness.processes import ServiceStartError
from racebench.harness.runner import Script, run_once
from racebench.harness.white_box import HttpTarget, InProcessTarget, Target
from racebench.names import pick
from racebench.progress import Progress
from racebench.reference_service.strategies import STRATEGY_NAMES
from racebench.results import (
    Expected,
    Incidents,
    Mode,
)

MODES: tuple[Mode, ...] = ("in_process", "http")


class Scenario(Protocol):
    """What the matrix needs of a scenario (racebench.scenarios.base.Scenario is one)."""

    @property
    def name(self) -> str: ...
    @property
    def script(self) -> Script: ...
    @property
    def modes(self) -> tuple[Mode, ...]: ...
    @property
    def lock_timeout_ms(self) -> int | None: ...
    def expected(self, strategy: str, mode: Mode) -> Expected: ...


def scenario_of(cell: Cell) -> Scenario:
    """A white-box cell's scenario (plan() makes cells of Scenarios only)."""
    return cast(Scenario, cell.scenario)


def _mode(value: str) -> Mode | None:
    """A mode name, or None for auto (each scenario in its own modes)."""
    if value == "auto":
        return None
    for mode in MODES:
        if value == mode:
            return mode
    raise ValueError(f"unknown mode {value!r}; choose from: auto, {', '.join(MODES)}")


def plan(
    catalogue: Mapping[str, Scenario], strategies: str, scenarios: str, mode: str
) -> list[Cell]:
    """The cells to run, from the scenarios in `catalogue`: each scenario in its own modes
    (auto), or in the one mode asked.

    With one mode, `--scenario all` means every scenario that runs in it; a scenario named
    explicitly that does not run in it is an error."""
    chosen_strategies = pick(strategies, STRATEGY_NAMES, "strategy")
    chosen_scenarios = [catalogue[n] for n in pick(scenarios, tuple(catalogue), "scenario")]
    only = _mode(mode)
    if only is not None:
        unsupported = [s.name for s in chosen_scenarios if only not in s.modes]
        if unsupported and scenarios != "all":
            raise ValueError(
                f"scenario {', '.join(unsupported)} does not run in {only} mode "
                f"(it runs {' and '.join(catalogue[unsupported[0]].modes)})"
            )
        chosen_scenarios = [s for s in chosen_scenarios if only in s.modes]
    cells: list[Cell] = []
    for scenario in chosen_scenarios:
        for m in scenario.modes if only is None else (only,):
            cells.extend(Cell(scenario, s, m) for s in chosen_strategies)
    return cells


async def run_cells(
    cells: Sequence[Cell],
    database_url: str,
    *,
    repeat: int = 1,
    seed: int | None = None,
    use_schedules: bool = True,
    gateway: Gateway | None = None,
    progress: Progress[CellRuns] | None = None,
) -> list[CellRuns]:
    """Run every cell `repeat` times; jitter at the race points when `seed` is given. Each
    cell is a unit of `progress` (its runs advance it)."""
    runs = {cell: CellRuns(cell, schedules=use_schedules) for cell in cells}
    hooks = _Hooks(progress, {cell: i for i, cell in enumerate(cells, start=1)}, repeat)
    by_target: dict[tuple[Mode, str], list[Cell]] = {}
    for cell in cells:
        by_target.setdefault((cell.mode, cell.strategy), []).append(cell)
    http_strategies = [s for (m, s) in by_target if m == "http"]
    async with Monitor.open(database_url) as monitor:
        # The first service starts now, while the in-process cells run.
        services = _Services([_http_opener(database_url, s) for s in http_strategies])
        try:
            for (mode, strategy), group in by_target.items():
                args = (monitor, runs, repeat, seed, use_schedules, gateway, hooks)
                if mode == "in_process":
                    # A scenario that waits out the service's lock timeout gets an app of its
                    # own with a shorter one (an app costs a pool, not a process).
                    for timeout in dict.fromkeys(scenario_of(c).lock_timeout_ms for c in group):
                        cells_of = [c for c in group if scenario_of(c).lock_timeout_ms == timeout]
                        async with InProcessTarget.open(
                            database_url, strategy, lock_timeout_ms=timeout
                        ) as in_process:
                            await _run_group(cells_of, in_process, *args)
                else:
                    try:
                        http = await services.next()
                    except (ServiceStartError, OSError) as error:
                        message = f"racebench serve did not start: {error}"
                        _record_error(group, runs, message, hooks)
                        continue
                    await _run_group(group, http, *args)
        finally:
            await services.aclose()
    return [runs[cell] for cell in cells]


@dataclass(frozen=True)
class _Hooks:
    """The progress hook, and where each cell stands in the whole run."""

    progress: Progress[CellRuns] | None
    index: dict[Cell, int]
    repeat: int

    def started(self, cell: Cell) -> None:
        if self.progress is not None:
            self.progress.started(cell.title, self.index[cell], len(self.index))

    def advanced(self, runs: int) -> None:
        if self.progress is not None:
            self.progress.advanced(runs, self.repeat)

    def finished(self, runs: CellRuns) -> None:
        if self.progress is not None:
            self.progress.finished(runs)


def _record_error(
    group: Sequence[Cell], runs: dict[Cell, CellRuns], message: str, hooks: _Hooks
) -> None:
    for cell in group:
        hooks.started(cell)
        runs[cell].outcomes.append(
            RunOutcome(CheckResult(True, [], incidents=Incidents()), [], [message])
        )
        runs[cell].seeds.append(None)
        hooks.finished(runs[cell])


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
    gateway: Gateway | None,
    hooks: _Hooks,
) -> None:
    for cell in group:
        cell_runs = runs[cell]
        hooks.started(cell)
        started = time.perf_counter()
        for i in range(repeat):
            run_seed = None if seed is None else seed + i
            jitter = None if run_seed is None else f"{run_seed}|{cell.title}"
            outcome = await run_once(
                scenario_of(cell).script,
                target,
                monitor,
                gateway=gateway,
                use_schedules=use_schedules,
                jitter_seed=jitter,
            )
            cell_runs.outcomes.append(outcome)
            cell_runs.seeds.append(run_seed)
            hooks.advanced(i + 1)
        cell_runs.duration_ms = (time.perf_counter() - started) * 1000.0
        hooks.finished(cell_runs)


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


__all__ = ["Cell", "CellRuns", "Scenario", "plan", "run_cells"]
