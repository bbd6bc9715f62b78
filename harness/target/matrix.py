"""The race matrix on a target: scenarios x the target's variants (its builds).

A cell is cells.Cell with a variant in place of the strategy: the target's name for a target
raced as it is, else each variant asked. What a cell expects is the variant's own declaration
in the target file (`caught_by`), nothing inherited: a variant holds every invariant unless it
names the scenarios that must catch it (`"races"`: every scenario that races captures). On the
command line, `--canary` says the same of every variant asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from racebench.harness.cells import Cell, CellRuns, RunOutcome
from racebench.harness.target.file import RACES, TargetSpec, Variant
from racebench.harness.target.race import TargetScript, run_target_once
from racebench.harness.target.service import running, target_database
from racebench.harness.target.session import Session
from racebench.names import ALL, pick
from racebench.progress import Progress
from racebench.results import Expected, Mode

TARGET_MODE: Mode = "http"  # a target is always raced over HTTP


class TargetScenario(Protocol):
    """What target mode needs of a scenario (racebench.scenarios.base.Scenario is one)."""

    @property
    def name(self) -> str: ...
    @property
    def catches_races(self) -> bool: ...
    def on_target(self, spec: TargetSpec) -> TargetScript | str: ...
    def expected(self, strategy: str, mode: Mode) -> Expected: ...


@dataclass(frozen=True)
class Plan:
    cells: list[Cell]
    scripts: dict[str, TargetScript]
    skipped: dict[str, str]  # scenario -> why it does not run on this target
    variants: dict[str, Variant]  # the variants asked, by name


def plan_target(
    catalogue: Mapping[str, TargetScenario],
    spec: TargetSpec,
    scenarios: str = ALL,
    strategies: str = ALL,
    *,
    canary: bool = False,
) -> Plan:
    """The cells of `scenarios` that `spec` can express, for each variant in `strategies`
    (the rest skipped, with the reason). `canary`: every variant asked must be caught (by
    every scenario named, or with `all` by every scenario that races captures)."""
    names = pick(scenarios, list(catalogue), "scenario")
    variants = choose_variants(spec, strategies)
    for variant in variants:
        if variant.caught_by != RACES:
            unknown = [n for n in variant.caught_by if n not in catalogue]
            if unknown:
                raise ValueError(
                    f"{spec.path}: [variants].{variant.name}.caught_by: unknown scenario "
                    f"{', '.join(unknown)}; choose from: {', '.join(catalogue)}"
                )
    if canary:
        caught_by = RACES if scenarios.strip() == ALL else tuple(names)
        variants = [replace(v, caught_by=caught_by) for v in variants]
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
        cells.extend(
            Cell(scenario, v.name, TARGET_MODE, v.expected(name, scenario.catches_races))
            for v in variants
        )
    if not cells:
        raise ValueError(f"no scenario asked runs on the target {spec.name!r}: {skipped}")
    return Plan(cells, scripts, skipped, {v.name: v for v in variants})


def choose_variants(spec: TargetSpec, strategies: str) -> list[Variant]:
    """The variants `strategies` names (`all`: every one the file declares)."""
    if spec.variants:
        chosen = pick(strategies, list(spec.variants), f"variant of {spec.name}")
        return [spec.variants[n] for n in chosen]
    if spec.takes_variant:
        if strategies.strip() == ALL:
            raise ValueError(
                f"{spec.path}: the service takes {{variant}} but the file declares no "
                "[variants]: name the builds with --strategy a,b (each expected to hold), or "
                "declare them, with what each must show, in [variants]"
            )
        return [Variant(n) for n in pick(strategies, [], "variant", also=str.isidentifier)]
    if strategies.strip() not in (ALL, spec.name):
        raise ValueError(
            f"--strategy: the target {spec.name!r} declares no [variants] and its service "
            "takes no {variant}: it is raced as it is"
        )
    return [Variant(spec.name)]


def variant_arg(spec: TargetSpec, variant: Variant) -> str | None:
    """What to start: a variant, or (a target raced as it is) None."""
    return variant.name if spec.takes_variant else None


async def run_target_cells(
    spec: TargetSpec,
    plan: Plan,
    *,
    repeat: int = 1,
    use_barrier: bool = True,
    database_url: str | None = None,
    progress: Progress[CellRuns] | None = None,
) -> list[CellRuns]:
    """Run every cell `repeat` times; one service (per variant) serves its cells.
    `database_url`: the server racebench makes the target's database on, when it makes one."""
    runs = {cell: CellRuns(cell, schedules=use_barrier) for cell in plan.cells}
    by_variant: dict[str, list[Cell]] = {}
    for cell in plan.cells:
        by_variant.setdefault(cell.strategy, []).append(cell)
    index = {cell: i for i, cell in enumerate(plan.cells, start=1)}
    for name, group in by_variant.items():
        # An unreachable service, a database or a barrier that cannot be used: bad input
        # (TargetUnreachable, DatabaseError, BarrierError), raised for the command to report.
        variant = variant_arg(spec, plan.variants[name])
        with target_database(spec, database_url) as database:
            with running(spec, variant, database.url) as target:
                async with Session.open(
                    target, use_barrier=use_barrier, database=database
                ) as session:
                    for cell in group:
                        await _run_cell(cell, plan, session, runs, repeat, index, progress)
    return [runs[cell] for cell in plan.cells]


async def _run_cell(
    cell: Cell,
    plan: Plan,
    session: Session,
    runs: dict[Cell, CellRuns],
    repeat: int,
    index: dict[Cell, int],
    progress: Progress[CellRuns] | None,
) -> None:
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
    variant: str | None = None,
    use_barrier: bool = True,
    database_url: str | None = None,
) -> list[RunOutcome]:
    """Run one target script `repeat` times on a service started (or checked) for it."""
    outcomes: list[RunOutcome] = []
    with target_database(spec, database_url) as database:
        with running(spec, variant, database.url) as target:
            async with Session.open(target, use_barrier=use_barrier, database=database) as session:
                for _ in range(repeat):
                    outcomes.append(await run_target_once(script, session))
    return outcomes


__all__ = ["Plan", "plan_target", "race_target_scenario", "run_target_cells"]
