"""The race gate in CI: every scenario x every strategy, in each mode the scenario runs in.

The matrix runs once per session (about half a minute: the http cells start
`racebench serve --workers 2` per strategy); each cell is then its own test, so a failure
names its scenario, strategy and mode, and shows the evidence.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from racebench.harness.cells import Cell, CellRuns
from racebench.harness.matrix import plan, run_cells
from racebench.harness.white_box import HTTP_WORKERS
from racebench.reference_service.strategies import holds
from racebench.scenarios import SCENARIOS

CELLS = plan(SCENARIOS, "all", "all", "auto")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def matrix(racebench_database_url: str) -> dict[str, CellRuns]:
    runs = await run_cells(CELLS, racebench_database_url)
    return {c.cell.title: c for c in runs}


def _id(cell: Cell) -> str:
    return f"{cell.scenario.name}-{cell.strategy}-{cell.mode}"


@pytest.mark.parametrize("cell", CELLS, ids=_id)
def test_cell(matrix: dict[str, CellRuns], cell: Cell) -> None:
    runs = matrix[cell.title]
    result = runs.result()
    outcome = runs.outcomes[0]
    evidence = outcome.check.message() + "".join(f"\n{e}" for e in outcome.errors)
    if cell.expected == "race":
        assert result.verdict == "race_detected", f"{cell.title} was not caught\n{evidence}"
    else:
        assert result.verdict == "safe", f"{cell.title}: {result.verdict}\n{evidence}"


def test_the_canary_is_caught_where_the_issue_says() -> None:
    must_catch_none = {"simultaneous", "interleaved", "hundred_way", "split_invoice"}
    for cell in CELLS:
        if cell.strategy == "none" and cell.scenario.name in must_catch_none:
            assert cell.expected == "race", cell.title
        if cell.strategy == "app_lock" and SCENARIOS[cell.scenario.name].catches_races:
            assert cell.expected == ("race" if cell.mode == "http" else "safe"), cell.title
        if holds(cell.strategy, processes=HTTP_WORKERS):  # safe in every mode: never a race
            assert cell.expected == "safe", cell.title
    http = {(c.scenario.name, c.strategy) for c in CELLS if c.mode == "http"}
    assert ("interleaved", "app_lock") in http
