"""Showing `racebench race`: progress, the scenario x strategy table, why a cell failed, JUnit.

harness/matrix.py computes the cells and their verdicts; this module only shows them. On a
terminal progress is a bar; in a CI log (stderr not a terminal) it is one line per finished
cell, so that a long matrix shows where it is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from racebench.console import console
from racebench.harness.cells import CellRuns
from racebench.harness.timeline import render
from racebench.harness.white_box import HTTP_WORKERS
from racebench.results import Finding

# Errors of a failing run shown under FAIL; the rest are in results.json.
MAX_ERRORS_SHOWN = 3
stderr = console(stderr=True)
stdout = console()


def announce(cells: int, repeat: int, seed: int | None, database: str) -> None:
    stderr.print(
        f"racebench race: {cells} cells x {repeat} run(s)"
        f"{f', seed {seed}' if seed is not None else ''} on {database}",
        highlight=False,
        soft_wrap=True,
    )


class RaceProgress:
    """Progress over all runs, on stderr: a bar on a terminal, else one line per cell."""

    def __init__(self, cells: int, repeat: int, console: Console | None = None) -> None:
        self.console = console or stderr
        self.cells, self.done = cells, 0
        self._label, self._runs_before, self._completed = "race", 0, 0
        self._bar: Progress | None = None
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task("race", total=cells * repeat)

    def __enter__(self) -> RaceProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    # The Progress protocol (racebench.progress): one unit per cell, advanced per run.
    def started(self, label: str, index: int, total: int) -> None:
        self._label, self._runs_before = label, self._completed

    def phase(self, name: str) -> None:
        pass

    def advanced(self, done: float, total: float) -> None:
        self._completed = self._runs_before + int(done)
        if self._bar is not None:
            self._bar.update(self._task, completed=self._completed, description=self._label)

    def finished(self, result: CellRuns) -> None:
        self.done += 1
        if self._bar is not None:
            return
        cell = result.cell
        as_expected = "ok" if result.result().passed else f"FAIL (expected {cell.expected})"
        self.console.print(
            f"[{self.done}/{self.cells}] {cell.scenario.name} {cell.strategy} {cell.mode}: "
            f"{result.verdict} {as_expected}, {result.tally()}, {result.duration_ms / 1000:.1f} s",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def show(
    cell_runs: Sequence[CellRuns],
    *,
    show_timeline: bool,
    wall_s: float,
    results: Path,
    title: str | None = None,
) -> list[CellRuns]:
    """Print the timelines (if asked), the table, each failure's evidence and a summary;
    return the cells that failed."""
    if show_timeline:
        for c in cell_runs:
            text = render(c.result().timeline, c.cell.title, width=stdout.width)
            stdout.print(text, highlight=False, markup=False, soft_wrap=True)
            stdout.print()
    stdout.print(matrix_table(cell_runs, title))
    failed = [c for c in cell_runs if not c.result().passed]
    for c in failed:
        stderr.print(f"[bold red]FAIL[/] {explain(c)}", highlight=False)
    stderr.print(
        f"{len(cell_runs) - len(failed)}/{len(cell_runs)} cells as expected in {wall_s:.1f} s; "
        f"results: {results}",
        highlight=False,
        soft_wrap=True,  # a log must show the results path whole, to copy it
    )
    return failed


def explain(c: CellRuns) -> str:
    """Why a cell failed: the evidence of its first wrong run, and how to run that run again."""
    result = c.result()
    lines = [f"{c.cell.title}: expected {result.expected}, got {result.verdict}"]
    if result.expected == "race":
        lines.append(f"caught in {c.caught}/{len(c.outcomes)} runs ({c.tally()})")
    index = c.first_wrong()
    if index is not None:
        outcome, run_seed = c.outcomes[index], c.seeds[index]
        if outcome.caught:
            lines.append(outcome.check.message())
        lines.extend(outcome.errors[:MAX_ERRORS_SHOWN])
        if run_seed is not None:
            lines.append(reproduce(c, run_seed))
    return "\n    ".join(lines)


def reproduce(c: CellRuns, run_seed: int) -> str:
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
    finding = result.finding
    if finding is Finding.ERROR or (result.error and not c.caught):
        return "[yellow]ERROR[/]"
    if finding is Finding.CAUGHT:
        # Caught at least once passes the cell; anything short of every run is worth a look.
        return f"[green]caught{count}[/]" if c.caught == n else f"[yellow]caught{count}[/]"
    if finding is Finding.MISSED:
        return f"[red]MISSED{count}[/]"
    if finding is Finding.VIOLATED:
        return f"[bold red]RACE{count}[/]"
    return f"[green]safe{count}[/]"


def matrix_table(cell_runs: Sequence[CellRuns], title: str | None = None) -> Table:
    """Scenario rows, strategy columns; a cell run in both modes shows both."""
    strategies = list(dict.fromkeys(c.cell.strategy for c in cell_runs))
    table = Table(
        title=title
        or f"racebench race: scenario x strategy (http: {HTTP_WORKERS} worker processes)"
    )
    table.add_column("scenario", no_wrap=True)
    for strategy in strategies:
        table.add_column(strategy, no_wrap=True)
    modes: dict[str, set[str]] = {}
    for c in cell_runs:
        modes.setdefault(c.cell.scenario.name, set()).add(c.cell.mode)
    rows: dict[str, dict[str, list[str]]] = {}
    for c in cell_runs:
        text = _cell_text(c)
        if c.cell.mode == "http" and len(modes[c.cell.scenario.name]) > 1:
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
        if result.finding is Finding.ERROR:
            errors += 1
            ET.SubElement(case, "error", message=result.error or "error").text = explain(c)
        else:
            failures += 1
            message = f"expected {result.expected}, got {result.verdict}"
            ET.SubElement(case, "failure", message=message).text = explain(c)
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
