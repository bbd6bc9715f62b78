"""Round trip: a real `racebench race` writes results.json, and the report reads it.

The other report tests use hand-written results; this one catches the harness and the report
drifting apart. It runs the write-up's interleaved scenario for none and for_update, in process,
on a fresh database ($DATABASE_URL's server, else the embedded one): a few seconds.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image, ImageColor

from racebench.race import run_race
from racebench.reports.build import HTML_FILE, MATRIX_FILE, TABLE_FILE, run_report
from racebench.reports.swimlanes import WAIT_FILL
from racebench.results import Results

FIGURE = re.compile(
    r'<figure><img src="data:image/png;base64,(?P<png>[A-Za-z0-9+/=]+)" '
    r'alt="interleaved x (?P<strategy>[a-z_]+)">'
    r"<figcaption>(?P<caption>[^<]*)</figcaption>"
    r"<details><summary>events as text</summary><pre>(?P<text>[^<]*)</pre>"
)


@pytest.fixture(scope="module")
def raced(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Path:
    """One real race of interleaved x {none, for_update}, reported once."""
    run_dir = tmp_path_factory.mktemp("round-trip") / "run"
    code = run_race(
        strategies="none,for_update",
        scenarios="interleaved",
        repeat=1,
        seed=1,
        json_path=None,
        out=run_dir,
        junit=None,
        show_timeline=False,
        mode="in_process",
        database_url=database_url,
        schedules=True,
    )
    assert code == 0
    assert run_report(run_dir, announce=False) == 0
    return run_dir


def test_the_harness_file_reads_back(raced: Path) -> None:
    results = Results.read(raced)
    cells = {(r.scenario, r.strategy, r.mode): (r.verdict, r.runs) for r in results.race}
    assert cells == {
        ("interleaved", "none", "in_process"): ("race_detected", 1),
        ("interleaved", "for_update", "in_process"): ("safe", 1),
    }


def test_matrix_and_table_report_the_right_cells(raced: Path) -> None:
    matrix = (raced / MATRIX_FILE).read_text()
    assert "| Scenario | none | for_update |" in matrix
    row = next(line for line in matrix.splitlines() if line.startswith("| interleaved |"))
    assert row.startswith("| interleaved | caught; DOUBLE_CAPTURE 1")
    assert row.endswith("| safe |")
    assert "2 cells: 1 safe, 1 caught, 0 unexpected." in matrix
    table = (raced / TABLE_FILE).read_text()
    headline = "| Race Condition Risk | HIGH: 1 payment captured twice or more, 1 invoice "
    assert headline in table
    assert "| NONE; no violation in 1 scenario run |" in table


def has_colour(png: bytes, colour: str) -> bool:
    wanted = ImageColor.getrgb(colour)
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
        return any(c == wanted for _, c in rgb.getcolors(maxcolors=1 << 20) or [])


def test_the_page_draws_both_timelines_and_for_updates_lock_wait(raced: Path) -> None:
    html = (raced / HTML_FILE).read_text(encoding="utf-8")
    figures = {m["strategy"]: m for m in FIGURE.finditer(html)}
    assert set(figures) == {"none", "for_update"}
    for strategy, figure in figures.items():
        png = base64.b64decode(figure["png"], validate=True)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
        for label in ("T0", "T1", "T4"):
            assert f" {label} " in figure["text"], (strategy, figure["text"])
    for_update = figures["for_update"]
    waits = re.search(r"(\d+) lock waits?\b", for_update["caption"])
    assert waits is not None and int(waits[1]) >= 1, for_update["caption"]
    # The webhook waits for the client's row lock, and the bar is drawn (its fill is in the PNG).
    assert re.search(r"webhook\s+waits for lock [\d.]+ ms: Lock/", for_update["text"])
    assert has_colour(base64.b64decode(for_update["png"]), WAIT_FILL)
