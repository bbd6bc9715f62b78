"""The scenario suite reads like docs/contracts.md and the write-up, and each script runs."""

from __future__ import annotations

import pytest

from racebench.pytest_plugin import RaceFactory
from racebench.reference_service.strategies import STRATEGY_NAMES
from racebench.scenarios import SCENARIO_NAMES, SCENARIOS

DESIGN_ORDER = (
    "simultaneous",
    "webhook_first",
    "client_first",
    "hundred_way",
    "interleaved",
    "duplicate_webhook",
    "out_of_order",
    "failed_then_captured",
    "captured_then_stale_failed",
    "split_invoice",
)


def test_every_design_scenario_is_there_in_order() -> None:
    """docs/contracts.md's scenarios come first, in its order; a new scenario goes after them."""
    assert SCENARIO_NAMES[: len(DESIGN_ORDER)] == DESIGN_ORDER


def test_a_scenario_that_catches_races_expects_what_holds_answers() -> None:
    """in_process: only `none` is caught; http (two workers): app_lock's locks split too."""
    for scenario in SCENARIOS.values():
        for strategy in STRATEGY_NAMES:
            caught_in = {
                mode
                for mode in ("in_process", "http")
                if scenario.expected(strategy, mode) == "race"
            }
            if not scenario.catches_races or strategy not in ("none", "app_lock"):
                assert caught_in == set(), (scenario.name, strategy)
            elif strategy == "none":
                assert caught_in == {"in_process", "http"}, scenario.name
            else:
                assert caught_in == {"http"}, scenario.name


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_each_scenario_states_its_script_and_expectation(name: str) -> None:
    scenario = SCENARIOS[name]
    module = __import__(f"racebench.scenarios.{name}", fromlist=["SCENARIO"])
    assert module.__doc__ and "Expected:" in module.__doc__
    for mode in scenario.modes:
        assert scenario.expected("for_update", mode) == "safe"


@pytest.mark.parametrize("name", SCENARIO_NAMES)
async def test_each_script_runs_cleanly_without_its_schedule(
    racebench_race: RaceFactory, name: str
) -> None:
    """With the schedules off (race points free), a safe strategy still holds everywhere."""
    race = await racebench_race("conditional_update", schedules=False, jitter_seed="7")
    await SCENARIOS[name].script(race)
    result = await race.check()
    assert result.valid, result.message()
    assert race.errors == []
