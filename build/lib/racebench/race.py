"""`racebench race`: the scenarios of racebench.scenarios through the harness's matrix, shown
and written to results.json (and JUnit)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from pathlib import Path

from racebench.harness import race_display as display
from racebench.harness.database import provision
from racebench.harness.gateway import Gateway
from racebench.harness.matrix import plan, run_cells
from racebench.results import DEFAULT_RUNS_DIR, Results, new_run_id
from racebench.scenarios import SCENARIOS

# Seeds drawn when none is given; small enough to type back in.
MAX_RANDOM_SEED = 1_000_000


def run_race(
    *,
    strategies: str = "all",
    scenarios: str = "all",
    repeat: int = 1,
    seed: int | None = None,
    json_path: Path | None = None,
    out: Path | None = None,
    junit: Path | None = None,
    show_timeline: bool = False,
    mode: str = "auto",
    database_url: str | None = None,
    schedules: bool = True,
    gateway: Gateway | None = None,
) -> int:
    """Run the matrix, show it, write results.json (and JUnit); 0 iff every cell passed."""
    cells = plan(SCENARIOS, strategies, scenarios, mode)
    if seed is None and repeat > 1:
        seed = secrets.randbelow(MAX_RANDOM_SEED)
    run_id = new_run_id("race")
    started = time.perf_counter()
    with provision(database_url) as db, display.RaceProgress(len(cells), repeat) as progress:
        display.announce(len(cells), repeat, seed, db.redacted)
        cell_runs = asyncio.run(
            run_cells(
                cells,
                db.url,
                repeat=repeat,
                seed=seed,
                use_schedules=schedules,
                gateway=gateway,
                progress=progress,
            )
        )
    wall_s = time.perf_counter() - started
    results = Results(run_id=run_id, race=[c.result() for c in cell_runs])
    path = results.write(out or DEFAULT_RUNS_DIR / run_id)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, json_path)
    if junit is not None:
        display.write_junit(cell_runs, junit)
    failed = display.show(cell_runs, show_timeline=show_timeline, wall_s=wall_s, results=path)
    return 1 if failed else 0
