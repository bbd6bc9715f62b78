"""examples/shop (a Flask service on psycopg that racebench did not write) through target mode:
the buggy version is caught, the fixed one holds. A short run; the acceptance figures (100/100,
0 over 1,000 runs) are in README.md with their commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from racebench.pytest_plugin import TargetRacer

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "target.toml"

pytestmark = pytest.mark.skipif(not SHOP.exists(), reason="examples/shop is not in this tree")


@pytest.fixture(autouse=True)
def shop_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DATABASE_URL", database_url)


@pytest.mark.parametrize("scenario", ["simultaneous", "hundred_way"])
async def test_the_buggy_shop_is_caught(
    racebench_target: TargetRacer, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setenv("SHOP_MODE", "buggy")
    run = await racebench_target(str(SHOP), scenario, repeat=3)
    assert run.caught == 3, run.message()


@pytest.mark.parametrize("scenario", ["simultaneous", "hundred_way", "split_invoice"])
async def test_the_fixed_shop_holds(
    racebench_target: TargetRacer, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    monkeypatch.setenv("SHOP_MODE", "fixed")
    run = await racebench_target(str(SHOP), scenario, repeat=3)
    assert run.caught == 0, run.message()
