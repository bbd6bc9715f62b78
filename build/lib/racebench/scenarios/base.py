"""What a scenario is: a short script of steps, and which strategies it expects to catch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from racebench.results import Expected, Mode

if TYPE_CHECKING:
    from racebench.harness.runner import Script


@dataclass(frozen=True, eq=False)  # identity: a scenario is one module's singleton
class Scenario:
    """One scenario: its script, the modes it runs in, and the strategies it must catch.

    `races[mode]` names the strategies expected to be caught (verdict race_detected) in that
    mode; every other strategy is expected to hold every invariant.
    """

    name: str
    summary: str
    script: Script
    races: Mapping[Mode, frozenset[str]] = field(default_factory=dict)
    modes: tuple[Mode, ...] = ("in_process",)

    def expected(self, strategy: str, mode: Mode) -> Expected:
        return "race" if strategy in self.races.get(mode, frozenset()) else "safe"


def caught(*strategies: str) -> frozenset[str]:
    return frozenset(strategies)
