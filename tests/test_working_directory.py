"""racebench run from a folder that is not its checkout: every file it writes lands under
`./reports/runs/<run id>/` of the folder it was started in (or under --out), and nowhere in
the package (a checkout here, site-packages from a wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from racebench.results import Results

ROOT = Path(__file__).resolve().parent.parent
# Written by Python, pytest and the linters as they run; not racebench's output.
NOT_OUTPUT = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _files(folder: Path) -> set[Path]:
    return {
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and not NOT_OUTPUT & set(p.relative_to(folder).parts)
    }


def test_a_short_bench_from_another_folder_writes_only_there(
    tmp_path: Path, racebench_database_url: str
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    package_before = _files(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "racebench.cli", "bench", "--strategies", "none,for_update",
         "--profile", "contention", "--users", "4", "--duration", "2s", "--rounds", "1",
         "--database-url", racebench_database_url],
        cwd=work,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    # Everything is in one run folder under ./reports/runs of the folder it was started in.
    written = _files(work)
    assert written, "the bench wrote nothing"
    runs = {p.parts[:3] for p in written}
    assert len(runs) == 1 and next(iter(runs))[:2] == ("reports", "runs"), sorted(written)
    run_dir = work.joinpath(*next(iter(runs)))
    assert (run_dir / "results.json") in {work / p for p in written}
    # Locust's own files are among them: it ran in its cell's folder, not in the package.
    assert any(p.name == "locust.json" for p in written), sorted(written)

    # The measurements were found where they were written: both rounds counted requests.
    rounds = Results.read(run_dir).bench
    assert {r.strategy for r in rounds} >= {"none", "for_update"}
    assert all(r.requests > 0 for r in rounds), [(r.strategy, r.requests) for r in rounds]

    # And nothing appeared in the package's own folders.
    assert _files(ROOT) - package_before == set()
