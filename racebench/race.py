"""`racebench race`: the scenarios of racebench.scenarios through the harness's matrix, shown
and written to results.json (and JUnit)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from racebench.harness import race_display as display
from racebench.harness.cells import CellRuns
from racebench.harness.database import provision
from racebench.harness.gateway import Gateway
from racebench.harness.matrix import plan, run_cells
from racebench.harness.target.file import load as load_target
from racebench.harness.target.matrix import plan_target, run_target_cells
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
    return _finish(
        cell_runs,
        run_id,
        wall_s=time.perf_counter() - started,
        out=out,
        json_path=json_path,
        junit=junit,
        show_timeline=show_timeline,
    )


def run_target_race(
    target: str,
    *,
    strategies: str = "all",
    scenarios: str = "all",
    repeat: int = 1,
    barrier: bool = True,
    canary: bool = False,
    database_url: str | None = None,
    json_path: Path | None = None,
    out: Path | None = None,
    junit: Path | None = None,
    show_timeline: bool = False,
) -> int:
    """`racebench race --target FILE`: the matrix with the target's variants in place of the
    strategies; 0 iff every cell passed (a canary caught, every other variant held)."""
    spec = load_target(target)
    if database_url is not None and not spec.owns_database:
        raise ValueError(
            f"--database-url: the target {spec.name!r} names its own database ([database].url); "
            'it applies to a target whose [database].url is "{database_url}"'
        )
    plan = plan_target(SCENARIOS, spec, scenarios, strategies, canary=canary)
    run_id = new_run_id("race")
    started = time.perf_counter()
    for name, why in plan.skipped.items():
        display.stderr.print(f"skipped {name}: {why}", highlight=False)
    with display.RaceProgress(len(plan.cells), repeat) as progress:
        display.announce(len(plan.cells), repeat, None, f"the target {spec.name} ({spec.path})")
        if not barrier:
            display.stderr.print("--no-barrier: a plain concurrent burst, nothing is forced")
        # Ctrl-C and SIGTERM (cli turns it into KeyboardInterrupt) unwind through the
        # barrier's connection, which closes: no lock outlives the run.
        cell_runs = asyncio.run(
            run_target_cells(
                spec,
                plan,
                repeat=repeat,
                use_barrier=barrier,
                database_url=database_url,
                progress=progress,
            )
        )
    return _finish(
        cell_runs,
        run_id,
        wall_s=time.perf_counter() - started,
        out=out,
        json_path=json_path,
        junit=junit,
        show_timeline=show_timeline,
        title=f"racebench race --target {spec.name}: scenario x variant",
        environment={"target": {"name": spec.name, "path": str(spec.path)}},
    )


def _finish(
    cell_runs: Sequence[CellRuns],
    run_id: str,
    *,
    wall_s: float,
    out: Path | None,
    json_path: Path | None,
    junit: Path | None,
    show_timeline: bool,
    title: str | None = None,
    environment: dict[str, object] | None = None,
) -> int:
    """Write the run's results (and the copies asked for), show them; 1 if a cell failed."""
    results = Results(run_id=run_id, race=[c.result() for c in cell_runs])
    results.environment.update(environment or {})
    path = results.write(out or DEFAULT_RUNS_DIR / run_id, copy_to=json_path)
    if junit is not None:
        display.write_junit(cell_runs, junit)
    failed = display.show(
        cell_runs, show_timeline=show_timeline, wall_s=wall_s, results=path, title=title
    )
    return 1 if failed else 0
