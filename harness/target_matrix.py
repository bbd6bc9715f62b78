"""The race matrix on a target: scenarios x (the target, or the target under each strategy).

A cell is matrix.Cell with the target in place of the strategy: its name, or, for a target
whose service command takes `{strategy}` (the reference service), each strategy asked. A
target of one's own is expected to hold every invariant (a strategy name the registry does not
know is expected to hold); the reference service under a strategy is expected what the
white-box matrix expects of it over HTTP with two workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from racebench.harness.matrix import Cell, CellRuns, Scenario
from racebench.harness.runner import RunOutcome
from racebench.harness.target_file import TargetSpec
from racebench.harness.target_race import (
    Session,
    TargetScript,
    run_target_once,
    running,
)
from racebench.progress import Progress
from racebench.reference_service.strategies import STRATEGY_NAMES


class TargetScenario(Scenario, Protocol):
    def on_target(self, spec: TargetSpec) -> TargetScript | str: ...


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]
    scripts: dict[str, TargetScript]
    skipped: dict[str, str]  # scenario -> why it does not run on this target


def plan_target(
    catalogue: Mapping[str, TargetScenario], spec: TargetSpec, scenarios: str, strategies: str
) -> Plan:
    """The cells of `scenarios` ("all" or names) that `spec` can express; the rest skipped."""
    if scenarios == "all":
        names = list(catalogue)
    else:
        names = list(dict.fromkeys(n.strip() for n in scenarios.split(",") if n.strip()))
        unknown = [n for n in names if n not in catalogue]
        if unknown or not names:
            raise ValueError(
                f"unknown scenario {', '.join(unknown)!r}; choose from: {', '.join(catalogue)}"
            )
    if spec.strategy_placeholder:
        chosen = _strategies(strategies)
    elif strategies not in ("all", spec.name):
        raise ValueError(
            f"--strategy: the target {spec.name!r} has no {{strategy}} in its [service] "
            "command or env; it is raced as it is"
        )
    else:
        chosen = [spec.name]
    scripts: dict[str, TargetScript] = {}
    skipped: dict[str, str] = {}
    cells: list[Cell] = []
    for name in names:
        scenario = catalogue[name]
        found = scenario.on_target(spec)
        if isinstance(found, str):
            skipped[name] = found
            continue
        scripts[name] = found
        cells.extend(Cell(scenario, strategy, "http") for strategy in chosen)
    if not cells:
        raise ValueError(f"no scenario asked runs on the target {spec.name!r}: {skipped}")
    return Plan(cells, scripts, skipped)


def _strategies(value: str) -> list[str]:
    if value == "all":
        return list(STRATEGY_NAMES)
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in STRATEGY_NAMES]
    if unknown or not names:
        raise ValueError(
            f"unknown strategy {', '.join(unknown)!r}; choose from: {', '.join(STRATEGY_NAMES)}"
        )
    return names


async def run_target_cells(
    spec: TargetSpec,
    plan: Plan,
    *,
    repeat: int = 1,
    use_barrier: bool = True,
    progress: Progress[CellRuns] | None = None,
) -> list[CellRuns]:
    """Run every cell `repeat` times; one service (per strategy) serves its cells."""
    runs = {cell: CellRuns(cell, schedules=use_barrier) for cell in plan.cells}
    by_strategy: dict[str, list[Cell]] = {}
    for cell in plan.cells:
        by_strategy.setdefault(cell.strategy, []).append(cell)
    index = {cell: i for i, cell in enumerate(plan.cells, start=1)}
    for strategy, group in by_strategy.items():
        # An unreachable service, a database or a barrier that cannot be used: bad input
        # (TargetUnreachable, DatabaseError, BarrierError), raised for the command to report.
        await _run_group(spec, plan, strategy, group, runs, repeat, use_barrier, index, progress)
    return [runs[cell] for cell in plan.cells]


async def _run_group(
    spec: TargetSpec,
    plan: Plan,
    strategy: str,
    group: Sequence[Cell],
    runs: dict[Cell, CellRuns],
    repeat: int,
    use_barrier: bool,
    index: dict[Cell, int],
    progress: Progress[CellRuns] | None,
) -> None:
    with running(spec, strategy if spec.strategy_placeholder else None) as target:
        async with Session.open(target, use_barrier=use_barrier) as session:
            for cell in group:
                script = plan.scripts[cell.scenario.name]
                if progress is not None:
                    progress.started(cell.title, index[cell], len(index))
                started = time.perf_counter()
                for i in range(repeat):
                    outcome = await run_target_once(script, session)
                    runs[cell].outcomes.append(outcome)
                    runs[cell].seeds.append(None)
                    if progress is not None:
                        progress.advanced(i + 1, repeat)
                    await asyncio.sleep(0)
                runs[cell].duration_ms = (time.perf_counter() - started) * 1000.0
                if progress is not None:
                    progress.finished(runs[cell])


async def race_target_scenario(
    spec: TargetSpec,
    script: TargetScript,
    *,
    repeat: int = 1,
    strategy: str | None = None,
    use_barrier: bool = True,
) -> list[RunOutcome]:
    """Run one target script `repeat` times on a service started (or checked) for it."""
    outcomes: list[RunOutcome] = []
    with running(spec, strategy) as target:
        async with Session.open(target, use_barrier=use_barrier) as session:
            for _ in range(repeat):
                outcomes.append(await run_target_once(script, session))
    return outcomes


__all__ = ["Plan", "plan_target", "race_target_scenario", "run_target_cells"]
