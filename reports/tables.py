"""The report's tables as data: the write-up's performance table and the safety matrix.

Each renderer (markdown, terminal, HTML) draws the same Table, so the three always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from racebench.harness.invariants import describe_incidents
from racebench.reports import formatting as fmt
from racebench.reports import stats
from racebench.reports.matrix import Matrix, Outcome, invariant_names
from racebench.reports.summary import (
    AFTER,
    BEFORE,
    BenchSummary,
    PairedChange,
    RunSummary,
    SafetySummary,
    Spread,
    exercise_notes,
    roles,
)

Tone = Literal["good", "bad", "warn", "neutral"]

ROW_MEAN = "Average Response Time"
ROW_P99 = "P99 Response Time"
ROW_THROUGHPUT = "Concurrent Throughput"
ROW_CPU = "CPU per Request"
ROW_RISK = "Race Condition Risk"
ROW_INTEGRITY = "Data Integrity"
# What the write-up claims for After against Before, shown beside what was measured.
WRITE_UP_CLAIM = (
    "The write-up this race comes from (README.md, Where this comes from: SELECT ... FOR "
    "UPDATE fixing the double capture) claims, for After against Before: "
    "150 -> 160 ms average (+10 ms), "
    "300 -> 350 ms p99 (+50 ms), 100 -> 98 req/s (-2%)."
)


@dataclass(frozen=True)
class TableCell:
    text: str
    delta: str = ""  # against Before, e.g. "+10 ms" or "-2.0%"
    note: str = ""  # the spread across rounds, or the evidence
    tone: Tone = "neutral"

    def inline(self) -> str:
        """The cell on one line: `160 ms (+10 ms); range 158..163`."""
        text = f"{self.text} ({self.delta})" if self.delta else self.text
        return f"{text}; {self.note}" if self.note else text


@dataclass(frozen=True)
class Row:
    label: str
    cells: list[TableCell]


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]  # the first names the label column
    rows: list[Row]
    notes: list[str] = field(default_factory=list)


def column_title(strategy: str, before: str | None = BEFORE, after: str | None = AFTER) -> str:
    if strategy == before:
        return f"Before ({strategy})"
    if strategy == after:
        return f"After ({strategy})"
    return strategy


def _metric_row(
    label: str,
    bench: dict[str, BenchSummary],
    strategies: list[str],
    get: Callable[[BenchSummary], Spread],
    show: Callable[[float], str],
    delta: Callable[[float, float], str],
    metric: stats.Metric,
    interval: Callable[[PairedChange], stats.Interval | None],
) -> Row:
    """Each strategy's median over its rounds, and against Before the verdict on the paired
    difference (with one round: the difference, no verdict)."""
    baseline = roles(list(bench))[0]
    before = bench.get(baseline) if baseline else None
    cells = []
    for s in strategies:
        summary = bench.get(s)
        if summary is None:
            cells.append(TableCell("not benchmarked"))
            continue
        spread = get(summary)
        change = ""
        if before is not None and s != baseline:
            paired = PairedChange.of(summary.rounds, before.rounds)
            verdict = stats.verdict(interval(paired) if paired else None, metric)
            change = (
                f"{stats.MEDIANS} {delta(spread.median, get(before).median)}; "
                f"{stats.PAIRED_MEAN}: {verdict}"
            )
        note = f"range {fmt.span(spread.low, spread.high)}" if spread.rounds > 1 else "1 round"
        cells.append(TableCell(show(spread.median), change, note))
    return Row(label, cells)


def _cpu_row(bench: dict[str, BenchSummary], strategies: list[str]) -> Row:
    """CPU time per request (the service and its PostgreSQL backends), when it was measured."""
    baseline = roles(list(bench))[0]
    before = bench.get(baseline) if baseline else None
    cells = []
    for s in strategies:
        summary = bench.get(s)
        cost = summary.cpu_ms_per_request if summary else None
        if summary is None or cost is None:
            cells.append(TableCell("not measured"))
            continue
        change = ""
        if before is not None and s != baseline:
            paired = PairedChange.of(summary.rounds, before.rounds)
            got = paired.cpu_per_request if paired else None
            change = f"{stats.PAIRED_MEAN}: {stats.verdict(got, stats.CPU_PER_REQUEST)}"
        note = f"range {cost.low:.3f}..{cost.high:.3f}" if cost.rounds > 1 else "1 round"
        cells.append(TableCell(f"{cost.median:.3f} ms", change, note))
    return Row(ROW_CPU, cells)


def _where(safety: SafetySummary) -> str:
    parts = []
    if safety.race_cells:
        parts.append(fmt.plural(safety.race_runs, "scenario run"))
    if safety.bench_requests:
        parts.append(fmt.plural(safety.bench_requests, "request"))
    return " + ".join(parts)


def evidence(safety: SafetySummary) -> str:
    """The per-code counts, as evidence: views of the same incidents, never to be added up."""
    return f"evidence: {fmt.counts(safety.violations)}"


def risk_cell(safety: SafetySummary) -> TableCell:
    if not safety.tested:
        return TableCell("not tested")
    if safety.violated:
        expected = "" if safety.unexpected_violations else " (expected race)"
        if safety.incidents is None:
            headline = "HIGH: incidents not counted in this results file"
        else:
            headline = f"HIGH: {describe_incidents(safety.incidents)}"
        return TableCell(headline + expected, note=evidence(safety), tone="bad")
    return TableCell("NONE", note=f"no violation in {_where(safety)}", tone="good")


def integrity_cell(safety: SafetySummary) -> TableCell:
    if not safety.tested:
        return TableCell("not tested")
    if safety.violated:
        where = (
            f"{safety.scenarios_with_violations} of the scenarios"
            if safety.scenarios_with_violations
            else "the benchmark"
        )
        return TableCell("At Risk", note=f"broken in {where}", tone="bad")
    if safety.race_errors:
        errored = fmt.plural(safety.race_errors, "scenario cell")
        return TableCell("unknown", note=f"{errored} errored", tone="warn")
    return TableCell("HELD", note=f"every invariant, {_where(safety)}", tone="good")


def performance_table(summary: RunSummary, profile: str | None) -> Table:
    """The write-up's table for one benchmark profile (None: the run has no benchmark)."""
    bench = summary.bench.get(profile, {}) if profile else {}
    # The strategies this profile measured; with no benchmark, every strategy the race ran.
    strategies = list(bench) or summary.strategies
    rounds = sorted({s.throughput_rps.rounds for s in bench.values()})
    title = f"Performance impact: {profile} profile" if profile else "Performance impact"
    notes = []
    orders = sorted({r.order for b in bench.values() for r in b.rounds})
    if rounds == [1]:
        notes.append(
            "One round per strategy (no spread, no median): differences against Before are "
            "printed without a verdict."
        )
    elif bench:
        notes.append(
            f"Medians of {'/'.join(map(str, rounds))} rounds per strategy "
            f"({', '.join(orders)} order); range = lowest..highest round. Against Before: "
            f"`{stats.MEDIANS}`, the change between the two medians; `{stats.PAIRED_MEAN}`, "
            f"the verdict on the mean round-by-round difference, {stats.METHOD}."
        )
    else:
        notes.append("No benchmark in this run: latency and throughput are not measured.")
    notes.append(
        "Race Condition Risk: incidents found by the invariant checks after every race "
        "scenario and benchmark round, each payment and invoice counted once however many "
        "invariants it broke; the per-invariant counts after them are evidence (views of the "
        "same incidents), not to be added up."
    )
    before, after = roles(strategies)
    if BEFORE in bench and AFTER in bench:
        notes.append(WRITE_UP_CLAIM)
    elif bench and before is not None and after is not None:
        notes.append(
            f"Before and After are the bench's first two arms, as it ran them: {before} and "
            f"{after}."
        )
    notes.extend(note for note in exercise_notes(summary) if note.startswith(f"{profile}:"))
    named = invariant_names([*summary.results.race, *summary.results.bench])
    if named:
        notes.append(f"Invariants (by the names their checks gave them): {named}.")
    rows = [
        _metric_row(
            ROW_MEAN,
            bench,
            strategies,
            lambda b: b.mean_ms,
            fmt.ms,
            fmt.delta_ms,
            stats.MEAN_LATENCY,
            lambda c: c.mean,
        ),
        _metric_row(
            ROW_P99,
            bench,
            strategies,
            lambda b: b.p99_ms,
            fmt.ms,
            fmt.delta_ms,
            stats.P99_LATENCY,
            lambda c: c.p99,
        ),
        _metric_row(
            ROW_THROUGHPUT,
            bench,
            strategies,
            lambda b: b.throughput_rps,
            fmt.rps,
            fmt.delta_percent,
            stats.THROUGHPUT,
            lambda c: c.throughput,
        ),
        _cpu_row(bench, strategies),
        Row(ROW_RISK, [risk_cell(summary.safety[s]) for s in strategies]),
        Row(ROW_INTEGRITY, [integrity_cell(summary.safety[s]) for s in strategies]),
    ]
    headers = [column_title(s, before, after) for s in strategies]
    return Table(title, ["Metric", *headers], rows, notes)


_TONES: dict[Outcome, Tone] = {
    Outcome.SAFE: "good",
    Outcome.CAUGHT: "good",
    Outcome.UNEXPECTED: "bad",
    Outcome.NOT_RUN: "neutral",
}


def matrix_table(matrix: Matrix) -> Table:
    tally = matrix.tally()
    summary = ", ".join(f"{tally[o]} {o.value}" for o in Outcome if o is not Outcome.NOT_RUN)
    rows = []
    for row in matrix.rows:
        cells = []
        for s in matrix.strategies:
            cell = matrix.cell(row, s)
            text = fmt.MISSING if cell.outcome is Outcome.NOT_RUN else cell.outcome.value
            cells.append(TableCell(text, note=cell.detail, tone=_TONES[cell.outcome]))
        rows.append(Row(row, cells))
    notes = [
        f"{len(matrix.cells)} cells: {summary}." if matrix.cells else "No race results.",
        "safe: a safe strategy held every invariant. caught: a strategy expected to race was "
        "caught. unexpected: a safe strategy broke, a race went unseen, or the run errored.",
    ]
    if matrix.invariants:
        notes.append(f"Invariants (by the names their checks gave them): {matrix.invariants}.")
    return Table(
        "Safety matrix: scenario x strategy", ["Scenario", *matrix.strategies], rows, notes
    )
