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


@pytest.mark.parametrize("strategy", ["none", "for_update", "serializable"])
async def test_a_killed_delivery_answers_503_and_its_redelivery_captures(
    racebench_race: RaceFactory, strategy: str
) -> None:
    race = await racebench_race(strategy)
    await SCENARIOS["retry_after_failed_capture"].script(race)
    result = await race.check()
    assert result.valid, result.message()
    assert race.errors == []
    told = [(t.actor, t.status, t.outcome) for t in race.told]
    assert told == [("delivery", 503, ""), ("redelivery", 200, "processed")]
    kills = [e for e in race.timeline.events if "pg_terminate_backend" in e.what]
    assert [e.actor for e in kills] == ["delivery"]


async def test_an_acknowledged_capture_the_database_lost_is_caught(
    racebench_race: RaceFactory,
) -> None:
    """The ledger is checked: a 2xx capture whose payment is not captured is ACKNOWLEDGED_LOST."""
    race = await racebench_race("for_update")
    payment = await race.payment()
    await race.then(race.verify("client", payment))
    assert (await race.check()).valid
    await race.monitor.conn.execute(
        "UPDATE payments SET status = 'pending' WHERE id = $1", payment.id
    )
    result = await race.check()
    assert "ACKNOWLEDGED_LOST" in result.anomaly_types, result.message()
    assert result.anomalies["ACKNOWLEDGED_LOST"][0]["payment_id"] == payment.id


async def test_invoice_fan_in_catches_none_by_invoice_drift(racebench_race: RaceFactory) -> None:
    race = await racebench_race("none")
    await SCENARIOS["invoice_fan_in"].script(race)
    result = await race.check()
    assert "INVOICE_DRIFT" in result.anomaly_types, result.message()
    evidence = result.anomalies["INVOICE_DRIFT"][0]
    assert evidence["allocated"] == 80_000
    assert evidence["amount_paid"] < 80_000
    # sum() over bigints is a numeric: evidence shows 80000 as the RESULT line does, never
    # Decimal('8E+4'), in results.json's types and in the failure's message.
    assert type(evidence["allocated"]) is int
    assert "Decimal" not in result.message() and "'allocated': 80000" in result.message()


@pytest.mark.parametrize("strategy", ["for_update", "conditional_update", "optimistic"])
async def test_invoice_fan_in_leaves_the_invoice_paid_on_a_safe_strategy(
    racebench_race: RaceFactory, strategy: str
) -> None:
    race = await racebench_race(strategy)
    await SCENARIOS["invoice_fan_in"].script(race)
    result = await race.check()
    assert result.valid, result.message()
    assert race.errors == []


async def test_a_2xx_for_a_capture_that_rolled_back_fails_by_acknowledged_lost(
    racebench_race: RaceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mutation of the service that answers 200 `processed` when its capture's backend dies
    (the transaction rolled back) is caught by the ledger after the launch, by name, not only
    by what the scenario expected: Razorpay never redelivers an acknowledged event."""
    from racebench.reference_service.db import DatabaseUnavailable
    from racebench.reference_service.models import WebhookOutcome
    from racebench.reference_service.routes import webhooks as route

    real = route.receive_webhook

    async def lying(*args: object, **kwargs: object) -> WebhookOutcome:
        try:
            return await real(*args, **kwargs)  # type: ignore[arg-type]
        except DatabaseUnavailable:
            return WebhookOutcome.PROCESSED

    monkeypatch.setattr(route, "receive_webhook", lying)
    race = await racebench_race("for_update")
    await SCENARIOS["retry_after_failed_capture"].script(race)
    result = await race.check()
    assert "ACKNOWLEDGED_LOST" in result.anomaly_types, result.message()
    assert result.name_of("ACKNOWLEDGED_LOST") == "Acknowledged capture lost"
    assert [(t.actor, t.status) for t in race.told] == [("delivery", 200)]  # no redelivery
