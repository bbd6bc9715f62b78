"""Report tests read synthetic results.json files; they need no database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reports.synthetic import write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with race and benchmark results (the documents' numbers)."""
    return write_run(tmp_path / "run")
