"""The turns of a concurrent bench: which database each arm runs on, and the start order.

The bench itself runs end to end in tests/loadtests/test_bench.py and test_compare.py; these
check the rules that keep anything tied to one database or one service process off one side.
"""

from __future__ import annotations

from pathlib import Path

from racebench.loadtests.config import BenchConfig
from racebench.loadtests.paired import MAX_CROSSED_ARMS, PairedBench, _Arm, _Slot
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
    assert bench.crossed
    assert _names(bench.placement(1)) == [("for_update", 1), ("for_update#2", 0)]
    assert _names(bench.placement(2)) == [("for_update", 0), ("for_update#2", 1)]


def test_services_start_in_balanced_pairs() -> None:
    """A1 B2, then B1 A2: each arm has one of the two oldest services and one of the two
    youngest, and every arm has a service on every database."""
    bench = _bench(["none", "for_update"])
    order = _names(bench.start_order())
    assert order == [("none", 0), ("for_update", 1), ("for_update", 0), ("none", 1)]
    assert sorted(order) == sorted((a, s) for a in ("none", "for_update") for s in (0, 1))


def test_three_arms_each_take_every_database_once_in_three_rounds() -> None:
    bench = _bench(["none", "for_update", "advisory"])
    for arm in bench.arms:
        slots = {s for r in (1, 2, 3) for a, s in bench.placement(r) if a is arm}
        assert slots == {0, 1, 2}, arm.label
    for r in (1, 2, 3):  # never two arms on one database in a round
        assert sorted(s for _, s in bench.placement(r)) == [0, 1, 2]


def test_more_arms_keep_their_own_database() -> None:
    strategies = ["none", "for_update", "advisory", "optimistic"]
    assert len(strategies) > MAX_CROSSED_ARMS
    bench = _bench(strategies)
    assert not bench.crossed
    assert _names(bench.placement(1)) == _names(bench.placement(2)) == _names(bench.start_order())
    assert [s for _, s in bench.placement(1)] == [0, 1, 2, 3]
