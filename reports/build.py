"""`racebench report RUN_DIR [--baseline OLD]`: results.json -> table.md, matrix.md,
report.html (and comparison.md), the tables on the terminal, and the gates' exit code."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from racebench.reports import formatting as fmt
from racebench.reports import plots
from racebench.reports.explore import (
    EXPLORE_FILE,
    explore_checks,
    explore_images,
    explore_table,
)
from racebench.reports.gate import GateResult, Thresholds, compare, race_checks
from racebench.reports.hints import (
    HINTS_FILE,
    hints_checks,
    hints_markdown,
    hints_sql_html,
    hints_table,
)
from racebench.reports.markdown import document, gate_markdown
from racebench.reports.matrix import build_matrix
from racebench.reports.page import Image, Page, render_page
from racebench.reports.summary import RunSummary, summarize
from racebench.reports.swimlanes import draw_swimlanes, timeline_text
from racebench.reports.tables import Table, matrix_table, performance_table
from racebench.reports.terminal import print_gate, print_table, terminal_console
from racebench.reports.thresholds import (
    DEFAULT_MAX_P99_INCREASE_PCT,
    DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    DEFAULT_MIN_P99_INCREASE_MS,
)
from racebench.reports.timeline import (
    TIMELINE_SCENARIO,
    TIMELINE_STRATEGIES,
    pick_timeline,
    read_timeline,
)
from racebench.results import RESULTS_FILE, Results

TABLE_FILE = "table.md"
MATRIX_FILE = "matrix.md"
COMPARISON_FILE = "comparison.md"
HTML_FILE = "report.html"


def performance_tables(summary: RunSummary) -> list[Table]:
    profiles: list[str | None] = [*summary.profiles] or [None]
    return [performance_table(summary, p) for p in profiles]


def chart_images(summary: RunSummary) -> list[Image]:
    images = []
    for profile in summary.profiles:
        bench = summary.bench[profile]
        images += [
            Image(f"Latency percentiles ({profile})", plots.latency_percentiles(bench, profile)),
            Image(f"Throughput ({profile})", plots.throughput(bench, profile)),
            Image(f"Latency over time ({profile})", plots.latency_over_time(bench, profile)),
        ]
    if not summary.profiles:
        no_bench = "no benchmark in this run (racebench bench, or racebench demo)"
        images += [
            Image(f"{name}", None, missing=no_bench)
            for name in ("Latency percentiles", "Throughput", "Latency over time")
        ]
    images.append(
        Image("Incidents per strategy", plots.violations(summary.safety), missing="nothing tested")
    )
    return images


def timeline_images(results: Results) -> list[Image]:
    images = []
    for strategy in TIMELINE_STRATEGIES:
        title = f"{TIMELINE_SCENARIO} x {strategy}"
        picked = pick_timeline(results.race, TIMELINE_SCENARIO, strategy)
        if picked is None or not picked.timeline:
            missing = "not run" if picked is None else "ran, but recorded no timeline"
            images.append(Image(title, None, missing=f"{missing} in this run"))
            continue
        lanes = read_timeline(picked.timeline, f"{title} ({picked.mode}, verdict {picked.verdict})")
        images.append(
            Image(
                title,
                draw_swimlanes(lanes),
                caption=(
                    f"{fmt.plural(len(lanes.marks), 'event')}, "
                    f"{fmt.plural(len(lanes.waits), 'lock wait')}"
                ),
                missing="no event could be placed on a lane",
                text=timeline_text(lanes),
            )
        )
    return images


def _facts(results: Results, run_dir: Path, baseline: Path | None) -> list[tuple[str, str]]:
    env = results.environment
    facts = [
        ("run", results.run_id),
        ("created", results.created_at),
        ("folder", str(run_dir)),
        ("machine", f"{env.get('platform', '?')}, {env.get('cpus', '?')} CPUs"),
        ("python", str(env.get("python", "?"))),
        (
            "race results",
            f"{len(results.race)} scenario x strategy cells, "
            f"{fmt.plural(sum(r.runs for r in results.race), 'scenario run')}",
        ),
        ("benchmark rounds", rounds_fact(results)),
    ]
    if baseline is not None:
        facts.append(("baseline", str(baseline)))
    return facts


def rounds_fact(results: Results) -> str:
    """`3 rounds of 2 strategies (6 measured)`: the rounds that ran, as results.json holds
    them, never the number asked for. A failed round (Locust sent nothing, the service did not
    start) did not run: it is counted apart, and the medians leave it out too."""
    if not results.bench:
        return "0"
    ran = [b for b in results.bench if not b.errored]
    failed = len(results.bench) - len(ran)
    rounds = len({(b.profile, b.round) for b in ran})
    strategies = len({b.arm for b in ran})
    kinds = "strategy" if strategies == 1 else "strategies"
    text = f"{fmt.plural(rounds, 'round')} of {strategies} {kinds} ({len(ran)} measured)"
    if failed:
        text += f"; {fmt.plural(failed, 'failed run')} not counted"
    return text


def resolve_run_dir(path: Path) -> Path:
    """The run folder that RUN_DIR names: the folder itself, or the folder of a results.json
    given by its path. Anything else is a ValueError (a typo must not report another run).

    A file of another name (a `race --json` copy) is refused rather than read: the report is
    written beside results.json, and the folder that holds a copy may belong to another run."""
    if path.is_dir():
        return path
    if path.is_file():
        if path.name == RESULTS_FILE:
            return path.parent
        raise ValueError(f"RUN_DIR must be a run folder or its {RESULTS_FILE}, not {path}")
    raise ValueError(f"RUN_DIR not found: {path}")


def run_report(
    run_dir: Path,
    *,
    baseline: Path | None = None,
    max_throughput_drop: float = DEFAULT_MAX_THROUGHPUT_DROP_PCT,
    max_p99_increase: float = DEFAULT_MAX_P99_INCREASE_PCT,
    min_p99_increase_ms: float = DEFAULT_MIN_P99_INCREASE_MS,
    console: Console | None = None,
    announce: bool = True,
) -> int:
    """Write the report files into `run_dir`; print the tables. 0 when the race gate holds (and,
    with a baseline, the performance gate too); 1 otherwise. ValueError on an unreadable file.
    `announce`: end with the report's path (a caller that prints it itself passes False).
    `run_dir` may also be the path of its results.json (see resolve_run_dir)."""
    console = console or terminal_console()
    run_dir = resolve_run_dir(run_dir)
    if baseline is not None and not baseline.exists():
        raise ValueError(f"baseline not found: {baseline}")
    results = Results.read(run_dir)
    summary = summarize(results)
    matrix = build_matrix(results.race)
    perf = performance_tables(summary)
    matrix_tab = matrix_table(matrix)
    race_gate = GateResult(
        race_checks(summary, matrix) + explore_checks(results) + hints_checks(results)
    )
    explored = explore_table(results)
    hinted = hints_table(results)

    gate: GateResult | None = None
    if baseline is not None:
        thresholds = Thresholds(max_throughput_drop, max_p99_increase, min_p99_increase_ms)
        gate = compare(summary, summarize(Results.read(baseline)), thresholds)

    (run_dir / TABLE_FILE).write_text(
        document(f"racebench: the write-up's performance table, measured ({results.run_id})", perf)
    )
    (run_dir / MATRIX_FILE).write_text(
        document(f"racebench: safety matrix ({results.run_id})", [matrix_tab])
    )
    if explored is not None:
        (run_dir / EXPLORE_FILE).write_text(
            document(f"racebench: explore ({results.run_id})", [explored])
        )
    if hinted is not None:
        (run_dir / HINTS_FILE).write_text(hints_markdown(results))
    if gate is not None:
        (run_dir / COMPARISON_FILE).write_text(
            f"# racebench: {results.run_id} against {baseline}\n\n" + gate_markdown(gate)
        )
    page = Page(
        title=f"racebench report {results.run_id}",
        facts=_facts(results, run_dir, baseline),
        performance=perf,
        matrix=matrix_tab,
        charts=chart_images(summary),
        timelines=timeline_images(results),
        gate=gate,
        race_gate=race_gate if race_gate.checks else None,
        explore=explored,
        explore_timelines=explore_images(results),
        hints=hinted,
        hints_sql=hints_sql_html(results),
    )
    html_path = run_dir / HTML_FILE
    html_path.write_text(render_page(page), encoding="utf-8")

    for table in perf:
        print_table(console, table)
    print_table(console, matrix_tab, compact=True)
    if explored is not None:
        print_table(console, explored)
    if hinted is not None:
        print_table(console, hinted)
    if race_gate.checks:
        console.print("[bold]race gate[/]")
        print_gate(console, race_gate)
    if gate is not None:
        console.print(f"[bold]performance gate against {baseline}[/]")
        print_gate(console, gate)
    if announce:
        console.print(f"report: {html_path.resolve()}", highlight=False, soft_wrap=True)
    ok = race_gate.passed and (gate is None or gate.passed)
    return 0 if ok else 1
