"""Report tests read synthetic results.json files; they need no database."""

from __future__ import annotations

from pathlib import Path

import pytest

from racebench.reports.build import run_report
from tests.reports.synthetic import write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with race and benchmark results (the write-up's numbers)."""
    return write_run(tmp_path / "run")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with the write-up's numbers, reported once for the module's readers."""
    run_dir = write_run(tmp_path_factory.mktemp("reported") / "run")
    assert run_report(run_dir) == 0
    return run_dir
