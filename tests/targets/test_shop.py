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
    "capture_vs_failed",
    "retry_after_failed_capture",
    "invoice_fan_in",
    "retry_after_lock_timeout",
)


@pytest.fixture(autouse=True)
def shop_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)


@pytest.mark.parametrize("scenario", ["simultaneous", "hundred_way", "split_invoice"])
async def test_read_then_save_is_caught(racebench_target: TargetRacer, scenario: str) -> None:
    run = await racebench_target(SHOP, scenario, repeat=2, variant="buggy")
    assert run.caught == 2, run.message()


@pytest.mark.parametrize("scenario", ON_A_TARGET)
async def test_row_locks_hold(racebench_target: TargetRacer, scenario: str) -> None:
    # One run each here; .ci/run also runs README's CI recipe (every scenario, 3 runs each).
    run = await racebench_target(SHOP, scenario, variant="fixed")
    assert run.caught == 0, run.message()
