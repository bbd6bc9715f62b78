"""The harness is not blind: it catches `none`, and a for_update that checks too early."""

from __future__ import annotations

import pytest

from racebench.harness.runner import Race
from racebench.pytest_plugin import RaceFactory
from racebench.reference_service.db import Tx
from racebench.reference_service.strategies import LockStrategy, PaymentRow
from racebench.reference_service.strategies.for_update import ForUpdate
from racebench.scenarios import SCENARIOS


class CheckThenLock(ForUpdate):
    """for_update, broken: it reads (and so checks) the status BEFORE taking the lock, and
    returns that stale row. The lock is real, but it comes too late to protect the check."""

    name = "for_update_check_then_lock"
    summary = "broken on purpose: status read before SELECT ... FOR UPDATE"

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        before = await LockStrategy.read_payment(self, tx, payment_id)
        await super().read_payment(tx, payment_id)  # the lock, too late
        return before


async def _run(race: Race, scenario: str) -> None:
    await SCENARIOS[scenario].script(race)
    assert race.errors == [], race.errors


CANARY_SCENARIOS = ["simultaneous", "interleaved", "hundred_way", "split_invoice"]


@pytest.mark.parametrize("scenario", CANARY_SCENARIOS)
async def test_none_is_caught(racebench_race: RaceFactory, scenario: str) -> None:
    race = await racebench_race("none")
    await _run(race, scenario)
    result = await race.check()
    assert not result.valid
    expected = "INVOICE_DRIFT" if scenario == "split_invoice" else "DOUBLE_CAPTURE"
    assert expected in result.anomaly_types, result.message()


async def test_a_for_update_that_checks_before_locking_is_caught(
    racebench_race: RaceFactory,
) -> None:
    race = await racebench_race(CheckThenLock())
    await _run(race, "interleaved")
    result = await race.check()
    assert "DOUBLE_CAPTURE" in result.anomaly_types, result.message()
    evidence = result.anomalies["DOUBLE_CAPTURE"][0]
    assert evidence["captures"] == 2
    assert sorted(s.split(":")[0] for s in evidence["sources"]) == ["client", "webhook"]
    # The timeline shows why: the webhook blocked on the lock, then captured anyway.
    kinds = [(e.actor, e.kind) for e in race.timeline.events]
    assert ("webhook", "blocked") in kinds


async def test_the_real_for_update_holds_the_same_schedule(racebench_race: RaceFactory) -> None:
    race = await racebench_race("for_update")
    await _run(race, "interleaved")
    result = await race.check()
    assert result.valid, result.message()
    assert ("webhook", "blocked") in [(e.actor, e.kind) for e in race.timeline.events]
