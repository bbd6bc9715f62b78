"""What `racebench bench` prints at its end: medians of the rounds per strategy, their spread,
each strategy against the first one round by round, and pgbench's ceiling if it was measured.

The figures come from racebench.reports.summary, like the report's; the bench itself writes only
its rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from racebench.console import console as make_console
from racebench.harness.invariants import describe_violations
from racebench.reports import stats
from racebench.reports.summary import BenchSummary, PairedChange, exercise_notes, summarize
from racebench.results import BenchResult, Results

# Wide enough for the summary table even when stderr is not a terminal (CI logs).
console = make_console(stderr=True)


@dataclass(frozen=True)
class StrategyLine:
    """One strategy's line: its rounds digested, and the change against the baseline
    (None for the baseline itself, the first strategy the bench ran)."""

    summary: BenchSummary
    versus: PairedChange | None


def strategy_lines(results: Results) -> list[StrategyLine]:
    """Per profile, the strategies in the order they ran; the first is the others' baseline.
    Errored rounds are left out (their violations still count in the report)."""
    summary = summarize(results)
    lines = []
    for profile, by_strategy in summary.bench.items():
        ran = [b for b in summary.rounds if b.profile == profile and not b.errored]
        order = [s for s in dict.fromkeys(b.arm for b in ran) if s in by_strategy]
        if not order:
            continue
        baseline = _rounds(ran, order[0])
        for strategy in order:
            versus = None
            if strategy != order[0]:
                versus = PairedChange.of(_rounds(ran, strategy), baseline)
            lines.append(StrategyLine(by_strategy[strategy], versus))
    return lines


def _rounds(rows: list[BenchResult], strategy: str) -> list[BenchResult]:
    return [r for r in rows if r.arm == strategy]


def summary_table(results: Results) -> Table:
    """Medians of the rounds per strategy, with the spread and the change against the first."""
    table = Table(title="racebench bench: medians of the rounds", title_justify="left")
    columns = ("strategy", "req/s", "range", "vs base", "mean", "p50", "p99", "p99 vs base")
    for column in (*columns, "p99.9", "max", "cpu ms/req", "busy", "failed", "incidents"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for line in strategy_lines(results):
        s, versus = line.summary, line.versus
        table.add_row(
            f"{s.strategy} ({s.throughput_rps.rounds}r)",
            f"{s.throughput_rps.median:.1f}",
            f"{100 * s.throughput_rps.rel_range:.1f}%",
            _change(versus.throughput) if versus else "base",
            f"{s.mean_ms.median:.2f}",
            f"{s.p50_ms.median:.2f}",
            f"{s.p99_ms.median:.2f}",
            _change(versus.p99) if versus else "base",
            f"{s.p999_ms.median:.2f}",
            f"{s.max_ms.median:.1f}",
            _cost(line),
            str(s.busy),
            str(s.failures),
            _incidents(s),
        )
    table.caption = (
        "latencies in ms (HDR, exact to 0.1 %); range: (max - min) / median req/s; "
        f"vs base: mean of the round-by-round differences, {stats.METHOD}; "
        "cpu ms/req: service + its PostgreSQL backends"
    )
    return table


def _incidents(summary: BenchSummary) -> str:
    """Payments affected, each once (never the per-invariant counts added up)."""
    if not summary.violations:
        return "0"
    if summary.incidents is None:
        return "not counted"
    return f"{summary.incidents.payments:,} payments"


def _change(interval: stats.Interval | None) -> str:
    if interval is None:
        return "-"
    if interval.half_width is None:
        return f"{interval.mean:+.1f}%"
    return f"{interval.mean:+.1f}% ±{interval.half_width:.1f}"


def verdict_lines(results: Results) -> list[str]:
    """Each strategy against the first, metric by metric: the verdict and its interval."""
    lines = []
    for line in strategy_lines(results):
        if line.versus is None:
            continue
        lines.append(
            f"{line.summary.strategy} vs {line.versus.baseline} ({line.versus.rounds} "
            f"paired rounds, {line.summary.profile}):"
        )
        lines += [f"  {name}: {text}" for name, text in line.versus.verdicts().items()]
    return lines


def _cost(line: StrategyLine) -> str:
    cost = line.summary.cpu_ms_per_request
    if cost is None:
        return "-"
    change = line.versus.cpu_per_request if line.versus else None
    return f"{cost.median:.3f}" + (f" ({_change(change)})" if change is not None else "")


def ceiling_lines(results: Results) -> list[str]:
    """pgbench's rate and each strategy's median throughput as a share of it, if the run
    measured the ceiling."""
    ceiling = results.environment.get("ceiling")
    if not ceiling:
        return []
    pgbench = ceiling["pgbench"]
    lines = [
        f"ceiling: pgbench {pgbench['tps']:.0f} tps for the capture transaction "
        f"({pgbench['clients']} clients, {pgbench['duration_s']} s)"
    ]
    if pgbench["tps"] > 0:
        for line in strategy_lines(results):
            rps = line.summary.throughput_rps.median
            lines.append(
                f"  {line.summary.strategy}: {rps:.0f} req/s = "
                f"{100 * rps / pgbench['tps']:.1f}% of pgbench"
            )
    return lines


def fault_lines(results: Results) -> list[str]:
    """Per round: the 5xx answers by status, 503s without Retry-After, transport errors, the
    ledger (acknowledged captures and webhooks the database lost) and, with --faults, the kills,
    the restart and the recovery time."""
    lines = []
    for row in results.bench:
        errors = ", ".join(f"{n} x {s}" for s, n in sorted(row.server_errors.items())) or "none"
        line = (
            f"{row.arm} round {row.round}: {row.requests} requests; 5xx: {errors}; "
            f"503 without Retry-After: {row.busy_without_retry_after}; "
            f"transport errors: {row.transport_errors}; "
            f"lost: {row.lost_captures} of {row.acked_captures} acked captures, "
            f"{row.lost_webhooks} of {row.acked_webhooks} acked webhooks; "
            f"invariants: {describe_violations(row.violations, row.incidents)}"
        )
        f = row.faults
        if f is not None:
            recovery = "never" if f.recovery_s is None else f"{f.recovery_s:.3f} s"
            restart = "-" if f.restart_s is None else f"{f.restart_s:.2f} s"
            line += (
                f"\n  faults: {f.kills} kills every {f.kill_every_s:g} s "
                f"({f.backends_killed} backends, {len(f.kill_errors)} failed), "
                f"{f.restarts} restart (took {restart}), recovery after it: {recovery}"
            )
        lines.append(line)
    return lines


def print_bench_summary(results: Results, path: Path) -> None:
    wide = console
    wide.print(summary_table(results))
    for line in verdict_lines(results):
        console.print(line, highlight=False)
    for line in ceiling_lines(results):
        console.print(line, highlight=False)
    for line in fault_lines(results):
        console.print(line, highlight=False)
    for note in exercise_notes(summarize(results)):
        console.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    console.print(f"results: {path}", highlight=False)
