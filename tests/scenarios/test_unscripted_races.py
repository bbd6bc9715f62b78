"""The races nobody scripted before: a failure racing a capture, and one invoice paid at once."""

from __future__ import annotations

import pytest

from racebench.pytest_plugin import RaceFactory
from racebench.scenarios import SCENARIOS


async def test_capture_vs_failed_catches_none_by_status_regression(
    racebench_race: RaceFactory,
) -> None:
    race = await racebench_race("none")
    await SCENARIOS["capture_vs_failed"].script(race)
    result = await race.check()
    assert "STATUS_REGRESSION" in result.anomaly_types, result.message()
    evidence = result.anomalies["STATUS_REGRESSION"][0]
    assert evidence["status"] == "failed"
    assert evidence["transitions"] == ["pending->captured", "pending->failed"]


@pytest.mark.parametrize("strategy", ["for_update", "conditional_update", "serializable"])
async def test_capture_vs_failed_ends_captured_on_a_safe_strategy(
    racebench_race: RaceFactory, strategy: str
) -> None:
    race = await racebench_race(strategy)
    await SCENARIOS["capture_vs_failed"].script(race)
    result = await race.check()
    assert result.valid, result.message()
    assert race.errors == []
