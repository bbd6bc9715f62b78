"""Every option of `race` and `bench` with --target is applied or refused, never ignored.

The tables below classify each of the commands' options; a new option that is in neither makes
the first test fail. Refused options exit 2 naming themselves; the applied ones are checked
together in one real run per command on examples/shop (its database made by racebench on the
test server), and each shows in what the run wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from racebench.cli import app
from racebench.results import Results
from tests.targets.shop import SHOP, shop_file

# Applied with --target (checked in the runs below).
RACE_APPLIED = {
    "target", "strategy", "scenario", "repeat", "json_path", "out", "junit", "timeline",
    "database_url", "barrier", "canary",
}  # fmt: skip
# Refused with --target: the options given, and what the message says.
RACE_REFUSED = {
    "mode": (["--mode", "http"], "--mode"),
    "seed": (["--seed", "3"], "--seed"),
    "schedule": (["--no-schedule"], "--no-schedule"),
}
BENCH_APPLIED = {
    "target", "strategies", "profile", "users", "rate", "duration", "rounds", "workers",
    "processes", "out", "database_url", "faults", "kill_every", "order", "gate",
    "max_throughput_drop", "max_p99_increase", "min_p99_increase_ms",
}  # fmt: skip
BENCH_REFUSED = {"ceiling": (["--ceiling"], "--ceiling")}
# Applied on a target whose database racebench makes and whose command takes {workers};
# refused, with the reason, on one that does not.
BENCH_CONDITIONAL = {
    "faults": (["--faults"], "--faults restarts a database racebench owns"),
    "database_url": (["--database-url", "postgresql://u@h/db"], "names its own database"),
    "workers": (["--workers", "2"], "takes no {workers}"),
}


def options(command: str) -> set[str]:
    group = typer.main.get_command(app)
    found = group.commands[command]  # type: ignore[attr-defined]
    return {p.name for p in found.params if p.param_type_name == "option" and p.name != "help"}


@pytest.mark.parametrize(
    ("command", "applied", "refused"),
    [("race", RACE_APPLIED, RACE_REFUSED), ("bench", BENCH_APPLIED, BENCH_REFUSED)],
)
def test_every_option_is_classified(command: str, applied: set[str], refused: dict) -> None:
    assert options(command) == applied | set(refused)
    assert not applied & set(refused)


@pytest.fixture
def owned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's database is one racebench makes ({database_url})."""
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("command", "refused"), [("race", RACE_REFUSED), ("bench", BENCH_REFUSED)])
def test_refused_options_exit_2_naming_themselves(command: str, refused: dict, owned: None) -> None:
    for given, words in refused.values():
        code, output = invoke(command, "--target", str(SHOP), *given)
        assert code == 2, (given, output)
        assert words in output and "Traceback" not in output


@pytest.fixture
def not_owned_without_workers(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)
    path = shop_file(tmp_path)
    text = path.read_text().replace("--workers {workers}", "--workers 2")
    path.write_text(text.replace("workers = 2\n", ""))
    yield path


def test_options_a_target_cannot_take_are_refused_with_why(not_owned_without_workers: Path) -> None:
    for given, words in BENCH_CONDITIONAL.values():
        code, output = invoke("bench", "--target", str(not_owned_without_workers), *given)
        assert code == 2, (given, output)
        assert words in output


def test_race_applies_its_options(tmp_path: Path, database_url: str, owned: None) -> None:
    out, json_path, junit = tmp_path / "run", tmp_path / "also.json", tmp_path / "junit.xml"
    code, output = invoke(
        "race", "--target", str(SHOP), "--strategy", "buggy", "--scenario", "simultaneous",
        "--repeat", "2", "--json", str(json_path), "--out", str(out), "--junit", str(junit),
        "--timeline", "--canary", "--barrier", "--database-url", database_url,
    )  # fmt: skip
    assert code == 0, output
    [cell] = Results.read(out).race
    assert (cell.scenario, cell.strategy, cell.runs) == ("simultaneous", "buggy", 2)
    assert cell.expected == "race" and cell.verdict == "race_detected"
    assert json.loads(json_path.read_text())["race"][0]["runs"] == 2
    assert '<testcase classname="racebench.race.simultaneous" name="buggy' in junit.read_text()
    assert "barrier: LOCK TABLE" in output  # --timeline, and the barrier held
    # --database-url: the server the shop's database is made on (here, one that is down).
    code, output = invoke(
        "race", "--target", str(SHOP), "--strategy", "fixed", "--scenario", "simultaneous",
        "--database-url", "postgresql://postgres@127.0.0.1:1/none",
    )  # fmt: skip
    assert code == 2 and "127.0.0.1:1" in output, output
    # --no-barrier: a plain burst, said so.
    code, output = invoke(
        "race", "--target", str(SHOP), "--strategy", "fixed", "--scenario", "simultaneous",
        "--no-barrier", "--database-url", database_url,
    )  # fmt: skip
    assert code == 0 and "--no-barrier: a plain concurrent burst" in output, output


def test_bench_applies_its_options(tmp_path: Path, database_url: str, owned: None) -> None:
    out = tmp_path / "run"
    code, output = invoke(
        "bench", "--target", str(SHOP), "--strategies", "buggy,fixed", "--profile",
        "contention", "--users", "4", "--duration", "2s", "--rounds", "2", "--order",
        "concurrent", "--processes", "2", "--workers", "1", "--out", str(out),
        "--database-url", database_url, "--gate", "--max-throughput-drop", "95",
        "--max-p99-increase", "900", "--min-p99-increase-ms", "7",
    )  # fmt: skip
    assert code == 0, output
    results = Results.read(out)
    assert sorted((r.strategy, r.round) for r in results.bench) == [
        ("buggy", 1), ("buggy", 2), ("fixed", 1), ("fixed", 2),
    ]  # fmt: skip
    for row in results.bench:
        assert (row.profile, row.order, row.users, row.workers) == (
            "contention",
            "concurrent",
            2,
            1,
        )
        assert row.locust_processes == 2 and row.requests > 0
        assert row.cpu_ms_per_request is not None  # racebench started the service
    buggy = [r for r in results.bench if r.strategy == "buggy"]
    assert all(r.violations.get("DUPLICATE_RECEIPT") for r in buggy)
    assert not any(r.violations for r in results.bench if r.strategy == "fixed")
    words = " ".join(output.split())  # the terminal wraps the gate's lines
    assert "fails past a 95% drop" in words and "fails past +900% (and +7 ms)" in words
    assert results.environment["bench"]["system"] == "shop"

    # The report renders the shop's own before/after table.
    code, output = invoke("report", str(out))
    assert code == 0, output
    table = (out / "table.md").read_text()
    assert "| Metric | Before (buggy) | After (fixed) |" in table
    assert "DUPLICATE_RECEIPT: payment captured twice (two receipts)" in table

    # --faults, --kill-every and --rate (the open model), on the database racebench owns.
    out = tmp_path / "faults"
    code, output = invoke(
        "bench", "--target", str(SHOP), "--strategies", "fixed", "--profile", "contention",
        "--faults", "--kill-every", "1", "--rate", "40", "--duration", "4s", "--rounds", "1",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    [row] = Results.read(out).bench
    assert row.model == "open" and row.rate == 40
    assert row.faults is not None and row.faults.kills >= 1 and row.faults.restarts == 1
    assert row.faults.kill_every_s == 1
    assert set(row.server_errors) <= {"503"} and row.busy_without_retry_after == 0
    assert row.lost_captures == 0 and row.lost_webhooks == 0 and not row.violations
