"""The scenarios of docs/contracts.md, one module each, by name (in the order of docs/contracts.md).

Adding one: write a module here with a `script(race)` and a `SCENARIO`, and add the module's
name to MODULES below (the order is the order of every listing).
"""

from __future__ import annotations

from importlib import import_module

from racebench.scenarios.base import Scenario

MODULES = (
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
    "capture_vs_failed",
    "retry_after_failed_capture",
    "invoice_fan_in",
    "retry_after_lock_timeout",
)


def _scenario_of(module: str) -> Scenario:
    scenario = import_module(f"{__name__}.{module}").SCENARIO
    if not isinstance(scenario, Scenario):
        raise TypeError(f"{__name__}.{module}.SCENARIO is not a Scenario")
    return scenario


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (_scenario_of(m) for m in MODULES)}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

__all__ = ["SCENARIOS", "SCENARIO_NAMES", "Scenario"]
