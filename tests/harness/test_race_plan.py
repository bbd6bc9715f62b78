"""Which cells `racebench race` plans for a choice of scenarios, strategies and mode."""

from __future__ import annotations

import pytest

from racebench.harness.matrix import plan
from racebench.scenarios import SCENARIOS


def test_http_with_every_scenario_runs_those_that_run_over_http() -> None:
    cells = plan(SCENARIOS, "for_update", "all", "http")
    assert {c.scenario.name for c in cells} == {
        name for name, s in SCENARIOS.items() if "http" in s.modes
    }
    assert cells and all(c.mode == "http" for c in cells)


def test_http_with_an_in_process_scenario_named_is_an_error() -> None:
    with pytest.raises(ValueError, match="webhook_first does not run in http mode"):
        plan(SCENARIOS, "for_update", "simultaneous,webhook_first", "http")


def test_a_name_given_twice_runs_once() -> None:
    cells = plan(SCENARIOS, "none,none", "client_first,client_first", "auto")
    assert [(c.scenario.name, c.strategy, c.mode) for c in cells] == [
        ("client_first", "none", "in_process")
    ]


@pytest.mark.parametrize(
    ("strategies", "scenarios", "mode"),
    [("nope", "all", "auto"), ("all", "nope", "auto"), ("all", "all", "nope"), ("", "all", "auto")],
)
def test_unknown_names_are_refused(strategies: str, scenarios: str, mode: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        plan(SCENARIOS, strategies, scenarios, mode)
