"""results.json of an unexpected shape: `racebench report` names the entry and the field in a
one-line error (exit 2) instead of a traceback; keys it does not know are ignored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.reports.build import HTML_FILE
from racebench.results import SCHEMA, Expected, LockWait, Results, TimelineEvent, judge
from tests.reports.synthetic import write_run

Edit = Callable[[dict[str, Any]], None]


def edited_run(folder: Path, edit: Edit) -> Path:
    """A valid synthetic run whose results.json `edit` then changes in place."""
    write_run(folder)
    path = folder / "results.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return folder


def cli_report(run_dir: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", str(run_dir)], env={"COLUMNS": "400"})
    # A SystemExit is typer's exit code; anything else is the traceback this file is about.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())


def test_unknown_keys_are_ignored_for_forward_compatibility(tmp_path: Path) -> None:
    def add_keys(data: dict[str, Any]) -> None:
        data["race"][0]["retries"] = 3
        data["bench"][0]["cpu_ms"] = 1.5
        data["bench"][0]["latency_ms"]["p9999"] = 400.0
        data["written_by"] = "racebench 2"

    run_dir = edited_run(tmp_path / "run", add_keys)
    code, output = cli_report(run_dir)
    assert code == 0, output
    assert (run_dir / HTML_FILE).exists()
    assert len(Results.read(run_dir).race) == 10


def delete(entry: str, index: int | None, key: str) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        target = data if index is None else data[entry][index]
        del target[key]

    return edit


def put(entry: str, index: int, key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data[entry][index][key] = value

    return edit


def replace_top(key: str, value: Any) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data[key] = value

    return edit


def drop_p99(data: dict[str, Any]) -> None:
    del data["bench"][1]["latency_ms"]["p99"]


def timeline_edit(index: int, key: str, value: Any) -> Edit:
    """race[3] is interleaved x none, whose timeline the synthetic run fills."""

    def edit(data: dict[str, Any]) -> None:
        row = data["race"][3]["timeline"][index]
        if value is None:
            del row[key]
        else:
            row[key] = value

    return edit


def synonyms(data: dict[str, Any]) -> None:
    """A made-up writer's words for an event (racebench reads only what it writes)."""
    data["race"][3]["timeline"][1] = {"at_ms": 1, "lane": "client", "step": "read"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (delete("", None, "created_at"), "results.json: field 'created_at' is missing"),
        (delete("", None, "run_id"), "results.json: field 'run_id' is missing"),
        (
            delete("race", 1, "verdict"),
            "results.json: race[1] (simultaneous x for_update): field 'verdict' is missing",
        ),
        (
            put("race", 2, "runs", "100"),
            "results.json: race[2] (simultaneous x optimistic): field 'runs' is string '100', "
            "not integer",
        ),
        (
            put("race", 0, "verdict", "maybe"),
            "results.json: race[0] (simultaneous x none): field 'verdict' is 'maybe', "
            "not one of safe, race_detected, error",
        ),
        (
            put("race", 0, "violations", {"DOUBLE_CAPTURE": "1"}),
            "results.json: race[0] (simultaneous x none): field 'violations': DOUBLE_CAPTURE is "
            "string '1', not an integer count",
        ),
        (
            drop_p99,
            "results.json: bench[1] (for_update round 1), latency_ms: field 'p99' is missing",
        ),
        (
            put("bench", 0, "throughput_rps", None),
            "results.json: bench[0] (none round 1): field 'throughput_rps' is null, not number",
        ),
        (
            timeline_edit(1, "t_ms", None),
            "results.json: race[3] (interleaved x none), timeline[1]: field 't_ms' is missing",
        ),
        (
            timeline_edit(2, "kind", "wait"),
            "results.json: race[3] (interleaved x none), timeline[2]: field 'kind' is 'wait', "
            "not one of send, arrive, blocked, release, answer, note, error, lock_wait",
        ),
        (
            timeline_edit(2, "t_ms", "2.5"),
            "results.json: race[3] (interleaved x none), timeline[2]: field 't_ms' is "
            "string '2.5', not number",
        ),
        (synonyms, "results.json: race[3] (interleaved x none), timeline[1]: field 'kind' is"),
        (
            put("bench", 2, "error", 1),
            "results.json: bench[2] (optimistic round 1): field 'error' is integer 1, not string",
        ),
        (replace_top("race", {"a": 1}), "results.json: field 'race' is object"),
        (replace_top("bench", ["x"]), "results.json: bench[0] is string 'x', not an object"),
    ],
)
def test_a_bad_shape_is_one_line_naming_entry_and_field(
    tmp_path: Path, edit: Edit, message: str
) -> None:
    run_dir = edited_run(tmp_path / "run", edit)
    code, output = cli_report(run_dir)
    assert code == 2
    assert output.startswith("racebench: ") and message in output, output
    assert "Traceback" not in output
    with pytest.raises(ValueError, match=r"field|not an object"):
        Results.read(run_dir)


def test_a_file_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("[1, 2]")
    code, output = cli_report(tmp_path)
    assert code == 2
    assert "is not a racebench.results/2 file (a list, not an object)" in output


V1_FILE = Path(__file__).parent / "fixtures" / "results-v1.json"


def test_a_v1_file_reads_as_typed_rounds_without_its_median_rows() -> None:
    """racebench.results/1 (a baseline an older racebench wrote): `extra` becomes fields, the
    median rows (round 0) are dropped, lock waits lose their repeated `t_ms`."""
    results = Results.read(V1_FILE)
    assert [(b.strategy, b.round) for b in results.bench] == [
        ("none", 1), ("for_update", 1), ("none", 2), ("for_update", 2),
    ]  # fmt: skip
    none = results.bench[0]
    assert (none.workers, none.expected_safe, none.error, none.model) == (1, False, None, "closed")
    assert (none.busy, none.acked_webhooks, none.pool_size) == (2, 500, 40000)
    assert none.outcomes == {"verify:captured": 1000}
    assert none.cpu is not None and none.cpu.groups["service"].total_cores == 0.9
    assert none.cpu.machine_busy == 0.95 and none.cpu_ms_per_request == 14.0
    assert none.locust is not None and none.locust.percentiles_ms == {"p50": 150.0, "p99": 300.0}
    timeline = results.race[1].timeline
    waits = [e for e in timeline if isinstance(e, LockWait)]
    assert len(timeline) == 6 and len(waits) == 1
    assert (waits[0].actor, waits[0].start_ms, waits[0].end_ms) == ("webhook", 3.0, 44.2)
    assert all(isinstance(e, TimelineEvent) for e in timeline if e not in waits)


def test_a_v1_file_written_back_is_v2_and_reads_the_same(tmp_path: Path) -> None:
    results = Results.read(V1_FILE)
    results.write(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["schema"] == SCHEMA
    again = Results.read(tmp_path)
    assert again.bench == results.bench and again.race == results.race


def test_a_v1_baseline_gates_a_v2_run(tmp_path: Path) -> None:
    """CI compares a new run with a baseline an older racebench wrote."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(V1_FILE.read_text())
    new = tmp_path / "new"
    Results.read(old).write(new)
    result = CliRunner().invoke(app, ["report", str(new), "--baseline", str(old)])
    assert result.exit_code == 0, result.output
    # The v1 median rows are not rounds: 2 rounds of 2 strategies, and none's violations once.
    table = (new / "table.md").read_text()
    # 1 race run + 4 + 3 in the rounds; a v1 file has no incidents, so the codes are evidence.
    assert "| HIGH: incidents not counted in this results file (expected race); " in table
    assert "evidence: DOUBLE_CAPTURE 8 |" in table
    html = (new / HTML_FILE).read_text()
    assert "2 rounds of 2 strategies (4 measured)" in html


@pytest.mark.parametrize(
    ("expected", "caught", "errored", "finding"),
    [
        ("safe", False, False, "safe"),
        ("safe", True, False, "violated"),
        ("safe", False, True, "error"),
        ("race", True, False, "caught"),
        ("race", True, True, "caught"),  # a catch decides the cell, errors or not
        ("race", False, False, "missed"),
        ("race", False, True, "error"),
    ],
)
def test_one_reading_of_expected_and_verdict(
    expected: Expected, caught: bool, errored: bool, finding: str
) -> None:
    assert judge(expected, caught=caught, errored=errored) == finding
    assert judge(expected, caught=caught, errored=errored).passed == (finding in ("safe", "caught"))
