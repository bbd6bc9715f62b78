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
    columns = (
        "strategy",
        "req/s",
        "range",
        f"vs base ({stats.PAIRED_MEAN})",
        "mean",
        "p50",
        "p99",
        f"p99 vs base ({stats.PAIRED_MEAN})",
    )
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
        f"vs base ({stats.PAIRED_MEAN}): the mean of the round-by-round differences"
        f" +- its 95% half-width, {stats.METHOD} (not the change between the medians); "
        "cpu ms/req: service + its PostgreSQL backends, with its paired mean vs base"
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
            f"paired rounds, {line.summary.profile}; {stats.PAIRED_MEAN} of the round-by-round"
            " differences):"
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
                f"  {line.summary.strategy}: {rps:.0f} req/s (median) = "
                f"{100 * rps / pgbench['tps']:.1f}% of pgbench"
            )
    return lines


def health_lines(results: Results) -> list[str]:
    """Every round at once (each was printed as it finished): the 5xx answers by status, 503s
    without Retry-After, transport errors, the ledger (acknowledged captures and webhooks the
    database lost) and, with --faults, the kills and restarts; then, again, only the rounds
    that broke one of those."""
    rows = results.bench
    if not rows:
        return []
    statuses: dict[str, int] = {}
    for row in rows:
        for status, n in row.server_errors.items():
            statuses[status] = statuses.get(status, 0) + n
    errors = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items())) or "none"
    lines = [
        f"{len(rows)} round(s): 5xx: {errors}; "
        f"503 without Retry-After: {sum(r.busy_without_retry_after for r in rows)}; "
        f"transport errors: {sum(r.transport_errors for r in rows)}; "
        f"lost: {sum(r.lost_captures for r in rows)} of {sum(r.acked_captures for r in rows)} "
        f"acked captures, {sum(r.lost_webhooks for r in rows)} of "
        f"{sum(r.acked_webhooks for r in rows)} acked webhooks"
    ]
    faulted = [r.faults for r in rows if r.faults is not None]
    if faulted:
        recoveries = [f.recovery_s for f in faulted]
        slowest = (
            "never, in some round"
            if None in recoveries
            else f"{max(r for r in recoveries if r is not None):.3f} s at most"
        )
        lines.append(
            f"faults: {sum(f.kills for f in faulted)} kills "
            f"({sum(f.backends_killed for f in faulted)} backends, "
            f"{sum(len(f.kill_errors) for f in faulted)} failed), "
            f"{sum(f.restarts for f in faulted)} restarts, recovery after each: {slowest}"
        )
    for row in rows:
        crashed = sorted(s for s in row.server_errors if s != "503")
        broke = [
            *([f"5xx {', '.join(crashed)}"] if crashed else []),
            *(
                [f"{row.busy_without_retry_after} x 503 without Retry-After"]
                if row.busy_without_retry_after
                else []
            ),
            *([f"{row.transport_errors} transport errors"] if row.transport_errors else []),
            *([f"{row.lost_captures} acked captures lost"] if row.lost_captures else []),
            *([f"{row.lost_webhooks} acked webhooks lost"] if row.lost_webhooks else []),
            *([f"error: {row.error}"] if row.error else []),
        ]
        if broke:
            lines.append(f"  {row.arm} round {row.round} broke: {'; '.join(broke)}")
    return lines


def print_bench_summary(results: Results, path: Path) -> None:
    wide = console
    wide.print(summary_table(results))
    for line in verdict_lines(results):
        console.print(line, highlight=False)
    for line in ceiling_lines(results):
        console.print(line, highlight=False)
    for line in health_lines(results):
        console.print(line, highlight=False)
    for note in exercise_notes(summarize(results)):
        console.print(f"[yellow]note[/] {escape(note)}", highlight=False)
    console.print(f"results: {path}", highlight=False)
