"""Showing a benchmark while it runs: a rich progress bar, and one line per finished cell.

Only shows; the summary at the end is racebench.reports' (reports/bench_table.py).
"""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from racebench.console import console as make_console
from racebench.harness.invariants import describe_violations
from racebench.loadtests.ceiling import Ceiling
from racebench.results import BenchResult

console = make_console(stderr=True)


class RichObserver:
    """racebench.progress.Progress of the bench: a bar over all cells (strategy x round), one
    over the running cell's load phase, and a line per finished cell (or pgbench's ceiling)."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._cells = self._progress.add_task("bench", total=None)
        self._load = self._progress.add_task("load", total=1.0, visible=False)
        self._label = ""
        self._shown = False

    def __enter__(self) -> RichObserver:
        return self  # the bar appears with the first cell, not before the options are checked

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._shown:
            self._progress.stop()
        if kind is KeyboardInterrupt:
            console.print("[yellow]interrupted: service, Locust and database were cleaned up[/]")

    def started(self, label: str, index: int, total: int) -> None:
        if not self._shown:
            self._progress.start()
            self._shown = True
        self._label = f"[bold]{label}[/]"
        self._progress.update(self._cells, description=self._label, total=total)

    def phase(self, name: str) -> None:
        self._progress.update(self._cells, description=f"{self._label}: {name}")
        self._progress.update(self._load, visible=name == "load", completed=0)

    def advanced(self, done: float, total: float) -> None:
        self._progress.update(
            self._load,
            description=f"  load {done:4.0f}/{total:.0f} s",
            completed=min(done / total, 1.0) if total else 1.0,
        )

    def finished(self, result: BenchResult | Ceiling) -> None:
        self._progress.update(self._load, visible=False)
        self._progress.advance(self._cells)
        if isinstance(result, Ceiling):
            console.print(f"  pgbench: {result.tps:.0f} tps", highlight=False)
            return
        console.print(round_line(result), highlight=False)


def round_line(result: BenchResult) -> str:
    """One finished round, whole: the only place a round is printed (the summary after the
    rounds aggregates them, and lists again only a round that broke something)."""
    errors = ", ".join(f"{n} x {s}" for s, n in sorted(result.server_errors.items())) or "none"
    line = (
        f"  {result.arm:<18} round {result.round}: {result.throughput_rps:8.1f} req/s, "
        f"p99 {result.latency_ms.p99:7.2f} ms, {result.requests} requests, "
        f"{result.busy} busy, {result.failures} failed, 5xx: {errors}, "
        f"lost {result.lost_captures}/{result.acked_captures} acked captures and "
        f"{result.lost_webhooks}/{result.acked_webhooks} webhooks, "
        f"{describe_violations(result.violations, result.incidents)}"
    )
    f = result.faults
    if f is not None:
        recovery = "never" if f.recovery_s is None else f"{f.recovery_s:.3f} s"
        line += (
            f"\n    faults: {f.kills} kills every {f.kill_every_s:g} s "
            f"({f.backends_killed} backends, {len(f.kill_errors)} failed), "
            f"{f.restarts} restart, recovery after it: {recovery}"
        )
    return line
