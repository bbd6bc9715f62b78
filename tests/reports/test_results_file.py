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
from racebench.results import Results
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
    assert "is not a racebench.results/1 file (a list, not an object)" in output
