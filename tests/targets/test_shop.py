"""examples/shop (a Flask service on the SQLAlchemy ORM that racebench did not write) through
target mode: its read-then-save version is caught, its row-lock version holds in every scenario
a target can run. Short runs; the acceptance figures (100/100, 0 over 1,000 runs) are in
README.md with their commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from racebench.pytest_plugin import TargetRacer

SHOP = str(Path(__file__).resolve().parents[2] / "examples" / "shop" / "target.toml")
ON_A_TARGET = (
    "simultaneous",
    "webhook_first",
    "client_first",
    "hundred_way",
    "duplicate_webhook",
    "out_of_order",
    "failed_then_captured",
    "captured_then_stale_failed",
    "split_invoice",
)


@pytest.fixture(autouse=True)
def shop_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)


@pytest.mark.parametrize("scenario", ["simultaneous", "hundred_way", "split_invoice"])
async def test_read_then_save_is_caught(
    racebench_target: TargetRacer, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setenv("SHOP_MODE", "buggy")
    run = await racebench_target(SHOP, scenario, repeat=2)
    assert run.caught == 2, run.message()


@pytest.mark.parametrize("scenario", ON_A_TARGET)
async def test_row_locks_hold(
    racebench_target: TargetRacer, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setenv("SHOP_MODE", "fixed")
    run = await racebench_target(SHOP, scenario, repeat=2)
    assert run.caught == 0, run.message()


def test_bench_target_counts_with_the_targets_invariants(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from racebench.harness import target_file
    from racebench.loadtests.profiles import parse_profile
    from racebench.loadtests.target_load import run_target_bench

    monkeypatch.setenv("SHOP_MODE", "fixed")
    [bench], path, code = run_target_bench(
        target_file.load(SHOP),
        profile=parse_profile("contention"),
        strategies=[None],
        users=4,
        duration_s=1.0,
        pool=40,
        out=tmp_path,
    )
    assert bench.requests > 0 and set(bench.statuses) == {"200"}, bench.statuses
    assert bench.violations == {} and code == 0
    assert path.exists()
