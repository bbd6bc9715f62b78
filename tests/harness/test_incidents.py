"""Incidents: the violations of a real `none` race grouped by what they happened to, each
payment counted once, however many invariants its double capture broke."""

from __future__ import annotations

from racebench.harness.invariants import (
    count_incidents,
    describe_violations,
    group_incidents,
    money,
)
from racebench.harness.runner import Race
from racebench.pytest_plugin import RaceFactory
from racebench.results import Incidents
from racebench.scenarios import SCENARIOS


async def _caught(race: Race, scenario: str) -> None:
    await SCENARIOS[scenario].script(race)
    assert race.errors == [], race.errors


async def test_one_payment_captured_twice_is_one_incident(racebench_race: RaceFactory) -> None:
    race = await racebench_race("none")
    await _caught(race, "simultaneous")
    result = await race.check()
    # Four invariants see the one double capture...
    assert {"DOUBLE_CAPTURE", "DUPLICATE_ALLOCATION", "DUPLICATE_RECEIPT"} <= set(result.counts)
    assert sum(result.counts.values()) >= 3
    # ... and it is one incident: one payment, its invoice, its amount captured once too many.
    row = result.anomalies["DOUBLE_CAPTURE"][0]
    assert row["captures"] == 2
    assert result.incidents == Incidents(
        payments=1,
        captured_twice=1,
        invoices=1,
        at_risk={row["currency"]: row["amount"]},
        unattributed=0,
    )
    assert result.message().startswith(
        f"Incidents: 1 payment captured twice or more, 1 invoice affected, "
        f"{money(row['currency'], row['amount'])} at risk; the evidence:\n"
        "Double capture (DOUBLE_CAPTURE): 1 violation(s)"
    )


async def test_money_at_risk_counts_every_capture_past_the_first(
    racebench_race: RaceFactory,
) -> None:
    race = await racebench_race("none")
    await _caught(race, "hundred_way")
    result = await race.check()
    row = result.anomalies["DOUBLE_CAPTURE"][0]
    assert row["captures"] > 2  # many of the hundred verifies got through
    assert result.incidents is not None
    assert result.incidents.captured_twice == 1
    assert result.incidents.at_risk == {row["currency"]: row["amount"] * (row["captures"] - 1)}


async def test_a_lost_invoice_update_is_an_invoice_incident(racebench_race: RaceFactory) -> None:
    """split_invoice: two payments captured once each, but the invoice lost one update."""
    race = await racebench_race("none")
    await _caught(race, "split_invoice")
    result = await race.check()
    assert "INVOICE_DRIFT" in result.counts and "DOUBLE_CAPTURE" not in result.counts
    assert result.incidents == Incidents(invoices=1)


async def test_a_safe_strategy_has_no_incident(racebench_race: RaceFactory) -> None:
    race = await racebench_race("for_update")
    await _caught(race, "simultaneous")
    result = await race.check()
    assert result.valid and result.incidents == Incidents()
    assert describe_violations(result.counts, result.incidents) == "no violation"


def test_rows_of_one_payment_are_grouped_and_its_invoice_joins_it() -> None:
    rows = {
        "DOUBLE_CAPTURE": [
            {"payment_id": 7, "captures": 2, "invoice_id": 70, "amount": 50_000, "currency": "INR"}
        ],
        "DUPLICATE_RECEIPT": [
            {"payment_id": 7, "receipts": 2, "invoice_id": 70, "amount": 50_000, "currency": "INR"}
        ],
        "INVOICE_DRIFT": [{"invoice_id": 70, "currency": "INR"}, {"invoice_id": 71}],
        "WEBHOOK_LOST": [{"event_id": "evt_1", "deliveries": 1, "kept": 0}],
        "DUPLICATE_EVENT_EFFECT": [{"event_id": "evt_2", "effects": 2, "payment_ids": [7]}],
    }
    incidents = group_incidents(rows)
    assert [(i.payment_id, i.invoice_id) for i in incidents] == [(7, 70), (None, 71), (None, None)]
    assert incidents[0].codes == [
        "DOUBLE_CAPTURE",
        "DUPLICATE_RECEIPT",
        "DUPLICATE_EVENT_EFFECT",
        "INVOICE_DRIFT",
    ]
    counted = count_incidents(incidents)
    assert counted == Incidents(
        payments=1, captured_twice=1, invoices=2, at_risk={"INR": 50_000}, unattributed=1
    )
    line = describe_violations({code: len(r) for code, r in rows.items()}, counted)
    assert line == (
        "1 payment captured twice or more, 2 invoices affected, INR 500.00 at risk, "
        "1 other incident; evidence: INVOICE_DRIFT 2, DOUBLE_CAPTURE 1, "
        "DUPLICATE_EVENT_EFFECT 1, DUPLICATE_RECEIPT 1, WEBHOOK_LOST 1"
    )


def test_money_reads_in_major_units() -> None:
    assert money("INR", 598_600_000) == "INR 5,986,000.00"
    assert money("INR", 123_405) == "INR 1,234.05"
    assert money("INR", 0) == "INR 0.00"
