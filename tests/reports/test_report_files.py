"""`racebench report RUN_DIR`: table.md, matrix.md and report.html hold the run's numbers, and
the page is self-contained: every image embedded and decodable, nothing fetched."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from racebench.cli import app
from racebench.reports.build import HTML_FILE, MATRIX_FILE, TABLE_FILE, run_report
from racebench.reports.tables import (
    ROW_INTEGRITY,
    ROW_MEAN,
    ROW_P99,
    ROW_RISK,
    ROW_THROUGHPUT,
    Row,
    Table,
    TableCell,
)
from racebench.reports.terminal import COMPACT_NOTE_CHARS, print_table
from racebench.results import RaceResult
from tests.reports.synthetic import bench_results, race_results, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Runs of each race cell in the repeated-run test (`racebench race --repeat 100`).
RUNS_PER_CELL = 100
DATA_PNG = "data:image/png;base64,"
# Three benchmark charts, the violations chart, two swimlane timelines.
IMAGES_IN_FULL_RUN = 6
# The write-up's table, as the synthetic rounds reproduce it (medians of three rounds).
DOCUMENT_FIGURES = [
    "150 ms",
    "160 ms (medians +10 ms; paired mean: slower by 6.2% (",
    "300 ms",
    "350 ms (medians +50 ms; paired mean: slower by 16.1% (",
    "100 req/s",
    "98.0 req/s (medians -2.0%; paired mean: no measurable difference (95% CI ",
]


class PageParser(HTMLParser):
    """Collects images, anything that could fetch, and the text of every table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.fetches: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag in ("script", "link", "iframe", "object", "embed", "video", "audio", "source"):
            self.fetches.append(tag)
        for name in ("src", "href", "srcset", "poster"):
            value = values.get(name) or ""
            if tag != "img" and value and not value.startswith("#"):
                self.fetches.append(f"{tag} {name}={value[:40]}")
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join(" ".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_report_writes_the_documents_table(reported: Path) -> None:
    run_dir = reported
    table = (run_dir / TABLE_FILE).read_text()
    for row in (ROW_MEAN, ROW_P99, ROW_THROUGHPUT, ROW_RISK, ROW_INTEGRITY):
        assert f"| {row} |" in table
    # Before, After, then every other strategy benchmarked (app_lock only raced: not a column).
    assert "| Metric | Before (none) | After (for_update) | optimistic |\n" in table
    assert (
        "| Concurrent Throughput | 100 req/s; range 98.0..102 | 98.0 req/s (medians -2.0%; "
        "paired mean: no measurable" in table
    )
    assert "| 155 ms (medians +5 ms; paired mean: no measurable difference (95% CI " in table
    # Every change names its aggregate: the change between medians, then the verdict on the
    # paired mean (a "+4.2%" beside a "+1.8% +-3.1" is two aggregates, each said).
    for row in (ROW_MEAN, ROW_P99, ROW_THROUGHPUT):
        line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
        for cell in line.strip("|").split(" | ")[2:]:  # the columns against Before
            assert re.search(r"\(medians [+-][\d.,]+( ms|%); paired mean: ", cell), cell
    for figure in DOCUMENT_FIGURES:
        assert figure in table
    assert "range 97.0..99.0" in table  # the spread of for_update's throughput rounds
    # none: 3 race cells x 2 violations + 3 rounds x 8.
    # The synthetic results predate incidents: the codes are evidence, never added up.
    assert (
        "HIGH: incidents not counted in this results file (expected race); evidence: "
        "DOUBLE_CAPTURE 15, DUPLICATE_RECEIPT 12, DUPLICATE_ALLOCATION 3" in table
    )
    assert "30" not in table.split(f"| {ROW_RISK} |")[1].split("\n")[0]
    assert "NONE; no violation in 3 scenario runs + 2,940 requests" in table


def test_matrix_is_generated_from_race_results(reported: Path) -> None:
    run_dir = reported
    matrix = (run_dir / MATRIX_FILE).read_text()
    assert "| Scenario | none | for_update | optimistic | app_lock |" in matrix
    assert (
        "| simultaneous | caught; DOUBLE_CAPTURE 1, DUPLICATE_ALLOCATION 1 | safe | safe | — |"
        in (matrix)
    )
    # A scenario that ran in two modes gets a row per mode, in-process first.
    assert matrix.index("| interleaved |") < matrix.index("| interleaved (http) |")
    assert "| interleaved (http) | — | — | — | caught; DOUBLE_CAPTURE 1 |" in matrix
    assert "10 cells: 6 safe, 4 caught, 0 unexpected." in matrix


def test_html_is_self_contained_and_every_image_decodes(reported: Path) -> None:
    run_dir = reported
    page = parse_page(run_dir / HTML_FILE)
    assert page.fetches == []
    assert len(page.images) == IMAGES_IN_FULL_RUN
    for src in page.images:
        assert src.startswith(DATA_PNG)
        data = base64.b64decode(src.removeprefix(DATA_PNG), validate=True)
        assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every pixel, not just the header
            assert image.width > 100 and image.height > 100
    text = (run_dir / HTML_FILE).read_text(encoding="utf-8")
    assert not re.search(r"url\(|@import|https?://", text)


def test_html_tables_hold_the_numbers_from_results_json(reported: Path) -> None:
    run_dir = reported
    cells = parse_page(run_dir / HTML_FILE).cells
    for figure in DOCUMENT_FIGURES:
        assert any(cell.startswith(figure) for cell in cells), figure
    assert (
        "HIGH: incidents not counted in this results file (expected race) evidence: "
        "DOUBLE_CAPTURE 15, DUPLICATE_RECEIPT 12, DUPLICATE_ALLOCATION 3" in cells
    )
    assert cells.count("caught DOUBLE_CAPTURE 1, DUPLICATE_ALLOCATION 1") == 3


def test_a_race_only_run_says_what_is_missing(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "race-only", bench=[])
    assert run_report(run_dir) == 0
    assert "not benchmarked" in (run_dir / TABLE_FILE).read_text()
    page = parse_page(run_dir / HTML_FILE)
    assert page.fetches == []
    assert len(page.images) == 3  # violations, and the two timelines
    assert "no benchmark in this run" in (run_dir / HTML_FILE).read_text()


def test_a_bench_only_run_has_no_matrix_and_no_timelines(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "bench-only", race=[])
    assert run_report(run_dir) == 0
    html = (run_dir / HTML_FILE).read_text()
    assert "interleaved x none: not run in this run" in html
    assert "No race results." in (run_dir / MATRIX_FILE).read_text()


def test_an_unexpected_cell_fails_the_report(tmp_path: Path) -> None:
    broken = RaceResult(
        scenario="simultaneous",
        strategy="for_update",
        mode="in_process",
        runs=1,
        expected="safe",
        verdict="race_detected",
        violations={"DOUBLE_CAPTURE": 1},
    )
    run_dir = write_run(tmp_path / "broken", race=[broken], bench=bench_results())
    assert run_report(run_dir) == 1
    assert "| simultaneous | unexpected; DOUBLE_CAPTURE 1 |" in (run_dir / MATRIX_FILE).read_text()


def test_the_cli_prints_the_tables_and_the_path(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(run_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Average Response Time" in result.output
    assert "Safety matrix" in result.output
    assert str((run_dir / HTML_FILE).resolve()) in result.output.replace("\n", "")


def test_the_cli_explains_a_missing_results_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "results.json does not exist" in " ".join(result.output.split())


def cli_report(*args: str) -> tuple[int, str]:
    """`racebench report ...` through the real command line: exit code and one-line output."""
    result = CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "400"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())


def test_a_typo_under_a_run_folder_is_not_the_parent_run(run_dir: Path) -> None:
    code, output = cli_report(str(run_dir / "typo"))
    assert code == 2
    assert f"racebench: RUN_DIR not found: {run_dir / 'typo'}" in output
    assert not (run_dir / HTML_FILE).exists()  # the parent's run was not reported instead


def test_a_run_folder_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "run"
    code, output = cli_report(str(missing))
    assert code == 2
    assert output == f"racebench: RUN_DIR not found: {missing}"


def test_the_path_of_results_json_reports_its_folder(run_dir: Path) -> None:
    code, output = cli_report(str(run_dir / "results.json"))
    assert code == 0, output
    assert (run_dir / HTML_FILE).exists() and (run_dir / MATRIX_FILE).exists()


def test_another_file_is_not_taken_for_a_run_folder(run_dir: Path) -> None:
    other = run_dir / "copy.json"
    other.write_text((run_dir / "results.json").read_text())
    code, output = cli_report(str(other))
    assert code == 2
    assert "RUN_DIR must be a run folder or its results.json" in output
    assert not (run_dir / HTML_FILE).exists()


def test_a_missing_baseline_is_named(run_dir: Path, tmp_path: Path) -> None:
    code, output = cli_report(str(run_dir), "--baseline", str(tmp_path / "old-typo"))
    assert code == 2
    assert f"racebench: baseline not found: {tmp_path / 'old-typo'}" in output


def test_risk_and_integrity_count_scenario_runs_not_cells(tmp_path: Path) -> None:
    race = race_results()
    for result in race:
        result.runs = RUNS_PER_CELL
    run_dir = write_run(tmp_path / "repeated", race=race)
    assert run_report(run_dir, announce=False) == 0
    table = (run_dir / TABLE_FILE).read_text()
    # for_update: 3 cells (simultaneous, interleaved, hundred_way) x 100 runs each.
    assert "NONE; no violation in 300 scenario runs + 2,940 requests" in table
    assert "HELD; every invariant, 300 scenario runs + 2,940 requests" in table
    assert "in 3 scenario runs" not in table
    html = (run_dir / HTML_FILE).read_text(encoding="utf-8")
    assert "10 scenario x strategy cells, 1,000 scenario runs" in html


def test_the_compact_terminal_matrix_cuts_long_notes() -> None:
    long_error = "error: AttributeError: 'ScheduleController' object has no attribute 'stalled'"
    table = Table(
        "m",
        ["Scenario", "for_update"],
        [Row("simultaneous", [TableCell("x", note=long_error, tone="bad")])],
    )
    stream = io.StringIO()
    print_table(Console(file=stream, width=400), table, compact=True)
    assert long_error[: COMPACT_NOTE_CHARS - 1] + "…" in stream.getvalue()
    assert "stalled" not in stream.getvalue()
    stream = io.StringIO()
    print_table(Console(file=stream, width=400), table)  # the full table keeps the whole note
    assert long_error in stream.getvalue()


def test_a_single_round_is_not_called_a_median(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "one-round", bench=[b for b in bench_results() if b.round == 1])
    assert run_report(run_dir, announce=False) == 0
    table = (run_dir / TABLE_FILE).read_text()
    assert "One round per strategy (no spread, no median)" in table
    assert "Medians of" not in table


def test_the_header_counts_the_rounds_that_ran(reported: Path) -> None:
    """Three alternating rounds of three strategies: nine measured rows, never an aggregate."""
    html = (reported / HTML_FILE).read_text(encoding="utf-8")
    assert "<td>benchmark rounds</td><td>3 rounds of 3 strategies (9 measured)</td>" in html


def test_the_header_leaves_failed_rounds_out(tmp_path: Path) -> None:
    """4 rounds asked of 3 strategies, the 4th failed for all: the header says 3 rounds (9
    measured), not 4 (12), and counts the failed runs apart."""
    bench = bench_results()
    bench += [
        row.model_copy(update={"round": 4, "error": "Locust sent no requests (exit 1)"})
        for row in bench
        if row.round == 1
    ]
    run_dir = write_run(tmp_path / "failed-round", bench=bench)
    run_report(run_dir, announce=False)
    page = parse_page(run_dir / HTML_FILE)
    strategies = len({row.strategy for row in bench})
    ran = len(bench) - strategies
    fact = f"3 rounds of {strategies} strategies ({ran} measured); {strategies} failed runs"
    at = page.cells.index("benchmark rounds")
    assert page.cells[at + 1] == f"{fact} not counted"


def test_the_report_names_its_source(reported: Path) -> None:
    """The write-up is named, never cited as "the documents" (it is not in the repository)."""
    for name in (TABLE_FILE, MATRIX_FILE, HTML_FILE):
        text = (reported / name).read_text(encoding="utf-8")
        assert "the documents" not in text.lower(), name
    table = (reported / TABLE_FILE).read_text()
    assert "The write-up this race comes from (README.md, Where this comes from" in table
    assert "+10 ms" in table and "(-2%)" in table
