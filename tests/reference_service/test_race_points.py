"""Race points cost nothing without a controller, and fire in order with one."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from racebench.harness.gateway import Gateway
from racebench.reference_service import race_points
from racebench.reference_service.db import Database
from racebench.reference_service.race_points import RacePoint, race_point
from tests.conftest import ClientFactory, new_payment


def test_without_a_controller_a_race_point_is_a_shared_finished_awaitable() -> None:
    assert race_points._controller is None
    assert race_point(RacePoint.AFTER_READ) is race_points.NOOP
    assert race_point(RacePoint.BEFORE_COMMIT) is race_points.NOOP
    assert race_point(RacePoint.AFTER_COMMIT, 1.0) is race_points.NOOP
    assert race_points.point_time.get() is None  # no clock read without a controller

    async def capture_step() -> str:
        await race_point(RacePoint.AFTER_READ)
        return "went on"

    # Driven by hand, with no event loop: it finishes on the first step, so it never
    # suspended, scheduled a callback or touched a loop.
    with pytest.raises(StopIteration) as finished:
        capture_step().send(None)
    assert finished.value.value == "went on"


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def reached(self, point: str, actor: str | None) -> None:
        self.seen.append((point, actor))


async def test_a_capture_reaches_both_points_in_order(
    client_for: ClientFactory, gateway: Gateway
) -> None:
    client: httpx.AsyncClient = await client_for("for_update")
    payment = await new_payment(client)
    checkout = gateway.checkout(payment["id"], payment["razorpay_order_id"])
    recorder = Recorder()
    token = race_points.current_actor.set("client")
    try:
        with race_points.installed(recorder):
            first = await client.post("/payments/verify", json=checkout.body())
            replay = await client.post("/payments/verify", json=checkout.body())
    finally:
        race_points.current_actor.reset(token)
    assert first.json()["replayed"] is False
    assert replay.json()["replayed"] is True
    # The capture: read, write, COMMIT (reported from the commit path); the replay found
    # "captured" after its read, so it reached neither write point, only the skip and COMMIT.
    assert recorder.seen == [
        (RacePoint.AFTER_READ, "client"),
        (RacePoint.BEFORE_COMMIT, "client"),
        (RacePoint.AFTER_COMMIT, "client"),
        (RacePoint.ALREADY_CAPTURED, "client"),
        (RacePoint.AFTER_COMMIT, "client"),
    ]
    assert race_points._controller is None


async def test_a_transaction_that_rolls_back_reports_its_rollback(database_url: str) -> None:
    """Its locks are gone when it rolls back: a harness draws the ROLLBACK that ends a
    waiter's wait (a statement's error, or the code around it raising), never a COMMIT."""
    db = Database(database_url)
    recorder = Recorder()
    token = race_points.current_actor.set("webhook")
    try:
        with race_points.installed(recorder):
            with pytest.raises(asyncpg.DivisionByZeroError):
                async with db.transaction() as tx:
                    await tx.conn.execute("SELECT 1 / 0")
            with pytest.raises(LookupError):
                async with db.transaction() as tx:
                    await tx.conn.execute("SELECT 1")
                    raise LookupError("the capture gave up")
            async with db.transaction() as tx:
                await tx.conn.execute("SELECT 1")
    finally:
        race_points.current_actor.reset(token)
        await db.close()
    assert recorder.seen == [
        (RacePoint.AFTER_ROLLBACK, "webhook"),
        (RacePoint.AFTER_ROLLBACK, "webhook"),
        (RacePoint.AFTER_COMMIT, "webhook"),
    ]


def test_only_one_controller_at_a_time() -> None:
    with race_points.installed(Recorder()), pytest.raises(RuntimeError):
        with race_points.installed(Recorder()):
            pass
