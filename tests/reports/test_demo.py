"""`racebench demo`'s own parts: the merged results file, and failing fast on bad input.
(The demo end to end takes about two minutes; it is run by hand, see README.md.)"""

from __future__ import annotations

import io
from pathlib import Path
from unittest.mock import patch

import pytest
from rich.console import Console

from racebench import demo
from racebench.demo import merge, run_demo
from racebench.reports.build import run_report
from racebench.results import Results
from tests.reports.synthetic import bench_results, race_results


def test_merge_keeps_both_lists_and_both_environments(tmp_path: Path) -> None:
    race = Results(run_id="r", race=race_results())
    race.environment["race"] = {"cells": 10}
    bench = Results(run_id="b", bench=bench_results())
    bench.environment["bench"] = {"profile": "contention"}
    merged = merge("demo-1", race, bench, duration="10s")
    merged.write(tmp_path)
    back = Results.read(tmp_path)
    assert back.run_id == "demo-1"
    assert len(back.race) == len(race.race) and len(back.bench) == len(bench.bench)
    assert back.environment["bench"] == {"profile": "contention"}
    assert back.environment["race"] == {"cells": 10}
    assert back.environment["demo"] == {"race_run": "r", "bench_run": "b", "duration": "10s"}
    assert run_report(tmp_path, announce=False) == 0


def test_merge_survives_a_missing_stage(tmp_path: Path) -> None:
    merged = merge("demo-2", Results(run_id="r", race=race_results()), None)
    assert merged.bench == [] and merged.environment["demo"]["bench_run"] is None


def test_a_bad_duration_fails_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        run_demo(out=tmp_path / "run", duration="ten seconds", database_url=None)
    assert not (tmp_path / "run").exists()


def test_an_unreadable_stage_is_said_and_left_out(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text('{"schema": "racebench.results/1", "run_id": "r"}')
    stream = io.StringIO()
    with patch.object(demo, "console", Console(file=stream, width=400)):
        assert demo._read(tmp_path) is None
        assert demo._read(tmp_path / "missing") is None
    assert "left out of the report:" in stream.getvalue()
    assert "field 'created_at' is missing" in stream.getvalue()
