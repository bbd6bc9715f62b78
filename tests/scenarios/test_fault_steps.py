"""The fault steps against a real PostgreSQL: a held row lock past the lock timeout, and a
database restart, each followed by Razorpay's redelivery of the same event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import httpx
import pytest
import pytest_asyncio

from racebench.harness import faults as faults_module
from racebench.harness.cells import Cell
from racebench.harness.database import provision
from racebench.harness.gateway import Gateway
from racebench.harness.locks import Monitor
from racebench.harness.matrix import run_cells
from racebench.harness.runner import Payment, Race, new_race
from racebench.harness.schedule import Schedule, reach, restart_database
from racebench.harness.white_box import HttpTarget, InProcessTarget
from racebench.reference_service import config
from racebench.reference_service.race_points import RacePoint
from racebench.reference_service.service import Service
from racebench.reference_service.strategies import STRATEGY_NAMES
from racebench.results import TimelineEvent
from racebench.scenarios import SCENARIOS
from racebench.scenarios.retry_after_lock_timeout import LOCK_TIMEOUT_MS

LOCK_SCENARIO = SCENARIOS["retry_after_lock_timeout"]
ShortLockRace = Callable[[str], Awaitable[Race]]


@pytest_asyncio.fixture
async def short_lock_race(
    racebench_database_url: str, racebench_monitor: Monitor
) -> AsyncIterator[ShortLockRace]:
    """A Race on the in-process app with the scenario's own (short, real) lock timeout."""
    targets: list[InProcessTarget] = []
    managers = []

    async def get(strategy: str) -> Race:
        manager = InProcessTarget.open(
            racebench_database_url, strategy, lock_timeout_ms=LOCK_SCENARIO.lock_timeout_ms
        )
        managers.append(manager)
        targets.append(await manager.__aenter__())
        return await new_race(targets[-1], racebench_monitor)

    yield get
    for manager in managers:
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
async def test_a_delivery_held_past_the_lock_timeout_answers_503_and_its_redelivery_captures(
    short_lock_race: ShortLockRace, strategy: str
) -> None:
    """Every strategy writes the row, so every one blocks on the harness's lock, whether it
    reads with a lock (for_update, advisory) or only writes (none, conditional_update, ...)."""
    race = await short_lock_race(strategy)
    await LOCK_SCENARIO.script(race)
    result = await race.check()
    assert result.valid, result.message()
    assert race.errors == []
    told = [(t.actor, t.status, t.outcome) for t in race.told]
    assert told == [("delivery", 503, ""), ("redelivery", 200, "processed")]
    held = next(e for e in race.timeline.events if "row lock" in e.what)
    holder = held.what.rsplit("pid ", 1)[1]
    blocked = [e for e in race.timeline.events if e.kind == "blocked"]
    assert [e.actor for e in blocked] == ["delivery"]
    assert f"waits for pid {holder}'s" in blocked[0].what
    # It waited out the service's real lock timeout, not less.
    sent = next(e for e in race.timeline.events if e.actor == "delivery" and e.kind == "send")
    answered = next(e for e in race.timeline.events if e.actor == "delivery" and e.kind == "answer")
    assert answered.t_ms - sent.t_ms >= LOCK_TIMEOUT_MS


async def test_a_hold_that_locks_nothing_makes_the_run_an_error(
    short_lock_race: ShortLockRace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If hold_lock held no lock, the delivery would capture at once: an error, not a pass."""
    monkeypatch.setattr(faults_module, "LOCK_PAYMENT_ROW", "SELECT id FROM payments WHERE id = $1")
    race = await short_lock_race("for_update")
    await LOCK_SCENARIO.script(race)
    assert any("did not happen" in e and "never seen blocked" in e for e in race.errors), (
        race.errors
    )


KILLED_BY_A_RESTART = Schedule.of(
    "the delivery reads, the database restarts under it",
    reach("T0", "delivery", RacePoint.AFTER_READ),
    restart_database("T1", "delivery"),
)


async def restart_script(race: Race) -> None:
    payment = await race.payment()
    event = race.event(payment)
    await race.together(
        race.deliver("delivery", event, expect=(503,)), schedule=KILLED_BY_A_RESTART
    )
    await race.then(race.deliver("redelivery", event))
    if await race.status_of(payment) != "captured":
        race.fail(f"payment {payment.id} should end captured")


async def test_a_restart_mid_capture_answers_503_and_the_redelivery_captures() -> None:
    """One strategy-agnostic test (see docs/contracts.md): a server of the test's own, which
    the harness may restart, in the middle of a delivery's transaction (its claim taken)."""
    with provision(owned=True) as db:
        assert db.owned_server is not None
        async with (
            Monitor.open(db.url) as monitor,
            InProcessTarget.open(db.url, "for_update") as target,
        ):
            race = await new_race(target, monitor, server=db.owned_server)
            await restart_script(race)
            result = await race.check()  # on the monitor's new connection
            assert result.valid, result.message()
            assert race.errors == []
            told = [(t.actor, t.status, t.outcome) for t in race.told]
            assert told == [("delivery", 503, ""), ("redelivery", 200, "processed")]
            assert any("database restarted" in e.what for e in race.timeline.events)


async def test_restart_database_on_a_server_the_harness_does_not_own_is_an_error(
    racebench_race: Callable[..., Awaitable[Race]],
) -> None:
    race = await racebench_race("for_update")
    await restart_script(race)
    assert any("cannot restart the database" in e for e in race.errors), race.errors


class ClaimWitness(faults_module.DatabaseFaults):
    """Before each kill, looks at what the doomed transaction has done."""

    seen: list[tuple[bool, bool]]

    async def terminate(self, pid: int) -> bool:
        row = await self.monitor.conn.fetchrow(
            """
            SELECT a.backend_xid IS NOT NULL AS wrote,
                   EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                           WHERE l.pid = a.pid AND c.relname = 'webhook_events'
                             AND l.mode = 'RowExclusiveLock') AS claimed
            FROM pg_stat_activity a WHERE a.pid = $1
            """,
            pid,
        )
        assert row is not None
        self.seen.append((row["wrote"], row["claimed"]))
        return await super().terminate(pid)


async def test_kill_backend_at_after_read_fails_the_capture_after_the_claim(
    racebench_race: Callable[..., Awaitable[Race]],
) -> None:
    """ "Make the capture fail after the claim" is kill_backend at AFTER_READ: the delivery's
    transaction has claimed the event id (its INSERT into webhook_events, the only write
    before that point under `none`) when its backend dies; the claim rolls back with it, so
    the redelivery is not a duplicate and captures."""
    race = await racebench_race("none")
    witness = ClaimWitness(race.monitor, race.monitor.database_url)
    witness.seen = []
    race.faults = witness
    await SCENARIOS["retry_after_failed_capture"].script(race)
    assert witness.seen == [(True, True)]
    result = await race.check()
    assert result.valid, result.message()
    assert [(t.actor, t.status, t.outcome) for t in race.told] == [
        ("delivery", 503, ""),
        ("redelivery", 200, "processed"),
    ]


async def test_the_fault_steps_work_over_http(
    racebench_database_url: str, racebench_monitor: Monitor
) -> None:
    """Against `racebench serve --workers 2`: kill_backend finds the worker transaction's
    backend through the race gate, and hold_lock holds up a worker's capture past the
    service's (short, real) lock timeout; each redelivery captures."""
    async with HttpTarget.open(
        racebench_database_url, "for_update", lock_timeout_ms=LOCK_TIMEOUT_MS
    ) as target:
        for name in ("retry_after_failed_capture", "retry_after_lock_timeout"):
            race = await new_race(target, racebench_monitor)
            await SCENARIOS[name].script(race)
            result = await race.check()
            assert result.valid, (name, result.message())
            assert race.errors == [], name
            told = [(t.actor, t.status, t.outcome) for t in race.told]
            assert told == [("delivery", 503, ""), ("redelivery", 200, "processed")], name


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "1"}])
async def test_a_503_without_retry_after_is_an_error(
    racebench_monitor: Monitor, headers: dict[str, str]
) -> None:
    """Every fault ends in a 503 the sender may retry: the harness insists on Retry-After."""

    def busy(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "busy", "message": "locked"}}
        return httpx.Response(503, json=body, headers=headers)

    client = httpx.AsyncClient(transport=httpx.MockTransport(busy), base_url="http://fake")
    async with client:
        race = Race(InProcessTarget(cast(Service, None), client), racebench_monitor, Gateway())
        payment = Payment(id=1, invoice_id=1, order_id="order_fake", amount=100)
        await race.then(race.verify("client", payment, expect=(503,)))
    missing = ["client: POST /verify answered 503 without Retry-After"]
    assert race.errors == ([] if headers else missing)


async def test_the_matrix_runs_a_scenario_with_its_own_lock_timeout(
    racebench_database_url: str,
) -> None:
    """The matrix gives retry_after_lock_timeout an app with the scenario's lock timeout: the
    held delivery answers 503 after LOCK_TIMEOUT_MS, long before the service's default."""
    cells = [
        Cell(LOCK_SCENARIO, "for_update", "in_process"),
        Cell(SCENARIOS["simultaneous"], "for_update", "in_process"),
    ]
    held, plain = await run_cells(cells, racebench_database_url)
    assert held.result().passed and plain.result().passed
    events = [e for e in held.outcomes[0].timeline if isinstance(e, TimelineEvent)]
    sent = next(e.t_ms for e in events if e.actor == "delivery" and e.kind == "send")
    answered = next(e.t_ms for e in events if e.actor == "delivery" and e.kind == "answer")
    assert LOCK_TIMEOUT_MS <= answered - sent < config.LOCK_TIMEOUT_MS
