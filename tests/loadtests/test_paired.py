"""The turns of a concurrent bench: which database each arm runs on, with a fresh service.

The bench itself runs end to end in tests/loadtests/test_bench.py and test_compare.py; these
check the rules that keep anything tied to one database or one service process off one side.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from racebench.harness.processes import ServiceSpec
from racebench.loadtests.config import BenchConfig
from racebench.loadtests.paired import PairedBench, _Arm, _Slot
from racebench.loadtests.profiles import PROFILES


def _bench(strategies: list[str]) -> PairedBench:
    config = BenchConfig(
        strategies=strategies,
        profile=PROFILES["verify"],
        users=8,
        rate=None,
        duration_s=6.0,
        rounds=4,
        workers=1,
        processes=1,
        run_dir=Path("unused"),
        database_url=None,
        order="concurrent",
    )
    arms = [_Arm(label, s) for label, s in zip(config.labels, strategies, strict=True)]
    slots = [_Slot(f"postgresql:///db{i}", f"db{i}") for i in range(len(arms))]
    return PairedBench(config, arms, slots)


def _names(pairs: list[tuple[_Arm, int]]) -> list[tuple[str, int]]:
    return [(arm.label, slot) for arm, slot in pairs]


def test_two_arms_swap_databases_every_round() -> None:
    bench = _bench(["for_update", "for_update"])
    assert _names(bench.placement(1)) == [("for_update", 1), ("for_update#2", 0)]
    assert _names(bench.placement(2)) == [("for_update", 0), ("for_update#2", 1)]


def test_every_round_has_a_fresh_service_of_its_own_for_each_arm(tmp_path: Path) -> None:
    """A service process is not reused across rounds: its log (one per process) names the
    round, the arm and the database, and no two rounds share one."""
    bench = _bench(["none", "for_update"])
    bench.config = replace(bench.config, run_dir=tmp_path)
    specs: dict[str, ServiceSpec] = {}
    for r in (1, 2, 3):
        for arm, slot in bench.placement(r):
            spec = bench._spec(arm, slot, r)
            assert spec.argv[spec.argv.index("--strategy") + 1] == arm.strategy
            assert spec.env["DATABASE_URL"] == bench.slots[slot].url
            assert spec.log_path is not None
            specs[spec.log_path.name] = spec
    assert sorted(specs) == [
        "r1-for_update-db1.log",
        "r1-none-db2.log",
        "r2-for_update-db2.log",
        "r2-none-db1.log",
        "r3-for_update-db1.log",
        "r3-none-db2.log",
    ]


@pytest.mark.parametrize("n", [3, 4, 7])
def test_any_number_of_arms_each_take_every_database_once_in_n_rounds(n: int) -> None:
    strategies = ["none", "for_update", "advisory", "optimistic", "serializable", "app_lock"]
    bench = _bench((strategies * 2)[:n])
    for arm in bench.arms:
        slots = {s for r in range(1, n + 1) for a, s in bench.placement(r) if a is arm}
        assert slots == set(range(n)), arm.label
    for r in range(1, n + 1):  # never two arms on one database in a round
        assert sorted(s for _, s in bench.placement(r)) == list(range(n))
