"""Showing a benchmark: a rich progress bar while it runs, a summary table when it is done.

Only shows; every figure comes from racebench.loadtests.bench / loadtests.summary.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from racebench.loadtests.summary import AGGREGATE_ROUND
from racebench.results import BenchResult, Results

# Wide enough for the summary table even when stderr is not a terminal (CI logs).
SUMMARY_WIDTH = 140
console = Console(stderr=True)


class RichObserver:
    """A bar over all cells (strategy x round) and one over the running cell's load phase."""

    def __init__(self, cells: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._cells = self._progress.add_task("bench", total=cells)
        self._load = self._progress.add_task("load", total=1.0, visible=False)
        self._label = ""

    def __enter__(self) -> RichObserver:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()
        if kind is KeyboardInterrupt:
            console.print("[yellow]interrupted: service, Locust and database were cleaned up[/]")

    def cell_started(self, strategy: str, round_no: int, rounds: int) -> None:
        self._label = f"[bold]{strategy}[/] round {round_no}/{rounds}"
        self._progress.update(self._cells, description=self._label)

    def phase(self, name: str) -> None:
        self._progress.update(self._cells, description=f"{self._label}: {name}")
        self._progress.update(self._load, visible=name == "load", completed=0)

    def load_progress(self, elapsed_s: float, duration_s: float) -> None:
        self._progress.update(
            self._load,
            description=f"  load {elapsed_s:4.0f}/{duration_s:.0f} s",
            completed=min(elapsed_s / duration_s, 1.0) if duration_s else 1.0,
        )

    def cell_finished(self, result: BenchResult) -> None:
        self._progress.update(self._load, visible=False)
        self._progress.advance(self._cells)
        violations = sum(result.violations.values())
        console.print(
            f"  {result.strategy:<18} round {result.round}: {result.throughput_rps:8.1f} req/s, "
            f"p99 {result.latency_ms.p99:7.2f} ms, {result.requests} requests, "
            f"{result.extra.get('busy', 0)} busy, {result.failures} failed, "
            f"{violations} violation(s)",
            highlight=False,
        )


def summary_table(results: Results) -> Table:
    """Medians of the rounds per strategy, with the spread and the change against the first."""
    table = Table(title="racebench bench: medians of alternating rounds", title_justify="left")
    columns = ("strategy", "req/s", "range", "vs base", "mean", "p50", "p99", "p99 vs base")
    for column in (*columns, "p99.9", "max", "cpu ms/req", "busy", "failed", "violations"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in results.bench:
        if row.round != AGGREGATE_ROUND:
            continue
        versus = row.extra.get("vs_baseline")
        table.add_row(
            f"{row.strategy} ({len(row.extra['rounds'])}r)",
            f"{row.throughput_rps:.1f}",
            f"{100 * row.extra['spread']['throughput_rps']['rel_range']:.1f}%",
            f"{versus['throughput_change_pct']:+.1f}%" if versus else "base",
            f"{row.latency_ms.mean:.2f}",
            f"{row.latency_ms.p50:.2f}",
            f"{row.latency_ms.p99:.2f}",
            f"{versus['p99_delta_ms']:+.2f}" if versus else "base",
            f"{row.latency_ms.p999:.2f}",
            f"{row.latency_ms.max:.1f}",
            _cost(row),
            str(row.extra.get("busy", 0)),
            str(row.failures),
            str(sum(row.violations.values())),
        )
    table.caption = (
        "latencies in ms (HDR, exact to 0.1 %); range: (max - min) / median req/s; "
        "cpu ms/req: service + its PostgreSQL backends"
    )
    return table


def _cost(row: BenchResult) -> str:
    cost = row.extra.get("cpu_ms_per_request")
    if not cost:
        return "-"
    versus = row.extra.get("vs_baseline", {}).get("cpu_per_request_change_pct")
    return f"{cost['median']:.3f}" + (f" ({versus:+.1f}%)" if versus is not None else "")


def ceiling_lines(results: Results) -> list[str]:
    """pgbench's rate and each strategy's share of it, if the run measured the ceiling."""
    ceiling = results.environment.get("ceiling")
    if not ceiling:
        return []
    pgbench = ceiling["pgbench"]
    lines = [
        f"ceiling: pgbench {pgbench['tps']:.0f} tps for the capture transaction "
        f"({pgbench['clients']} clients, {pgbench['duration_s']} s)"
    ]
    for row in results.bench:
        if row.round == AGGREGATE_ROUND and "share_of_pgbench" in row.extra:
            lines.append(
                f"  {row.strategy}: {row.throughput_rps:.0f} req/s = "
                f"{100 * row.extra['share_of_pgbench']:.1f}% of pgbench"
            )
    return lines


def print_summary(results: Results, path: Path) -> None:
    wide = console if console.is_terminal else Console(stderr=True, width=SUMMARY_WIDTH)
    wide.print(summary_table(results))
    for line in ceiling_lines(results):
        console.print(line, highlight=False)
    console.print(f"results: {path}", highlight=False)
