"""The scenarios of DESIGN.md, one module each, by name (in the order of DESIGN.md).

Adding one: write a module with a `script(race)` and a `SCENARIO`, and add it below.
"""

from __future__ import annotations

from racebench.scenarios import (
    captured_then_stale_failed,
    client_first,
    duplicate_webhook,
    failed_then_captured,
    hundred_way,
    interleaved,
    out_of_order,
    simultaneous,
    split_invoice,
    webhook_first,
)
from racebench.scenarios.base import Scenario

SCENARIOS: dict[str, Scenario] = {
    module.SCENARIO.name: module.SCENARIO
    for module in (
        simultaneous,
        webhook_first,
        client_first,
        hundred_way,
        interleaved,
        duplicate_webhook,
        out_of_order,
        failed_then_captured,
        captured_then_stale_failed,
        split_invoice,
    )
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)

__all__ = ["SCENARIOS", "SCENARIO_NAMES", "Scenario"]
