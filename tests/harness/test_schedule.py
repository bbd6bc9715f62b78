"""The schedule controller on its own: fake actors, a fake probe, no database.

What it promises: actors are held where the schedule says, a blocked actor is skipped instead
of waited for, a stalled step ends in an error (never a hang), and everyone is released at the
end. Synchronisation is by events only; nothing here sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from harness import schedule as schedule_module
from harness.schedule import (
    Jitter,
    Schedule,
    ScheduleController,
    commit,
    reach,
    rendezvous,
)
from harness.timeline import Timeline
from reference_service.race_points import AFTER_READ, BEFORE_COMMIT

T0_T7 = Schedule.of(
    "T0-T7",
    reach("T0", "client", AFTER_READ),
    reach("T1", "webhook", AFTER_READ),
    reach("T4", "client", BEFORE_COMMIT),
    reach("T5", "webhook", BEFORE_COMMIT),
    commit("T6", "client"),
    commit("T7", "webhook"),
)


class FakeProbe:
    """Reports an actor blocked while its name is in `blocked`."""

    def __init__(self) -> None:
        self.blocked_actors: set[str] = set()

    async def blocked(self, actor: str, others_in_flight: int) -> str | None:
        return "on Lock/tuple (fake)" if actor in self.blocked_actors else None

    async def anyone_blocked(self) -> str | None:
        return "on Lock/tuple (fake)" if self.blocked_actors else None


async def capture(controller: ScheduleController, actor: str, log: list[str]) -> None:
    """What the service does: two race points, in order."""
    await controller.may_start(actor)
    await controller.reached(AFTER_READ, actor)
    log.append(f"{actor} writes")
    await controller.reached(BEFORE_COMMIT, actor)
    log.append(f"{actor} commits")
    controller.finished(actor)


async def play(controller: ScheduleController, *actors: str) -> list[str]:
    log: list[str] = []
    tasks = [asyncio.create_task(capture(controller, a, log)) for a in actors]
    await controller.drive()
    await asyncio.gather(*tasks)
    return log


async def test_t0_t7_interleaves_both_actors_before_either_commits() -> None:
    timeline = Timeline()
    controller = ScheduleController(["client", "webhook"], T0_T7, timeline, FakeProbe())
    log = await play(controller, "client", "webhook")
    assert log == ["client writes", "webhook writes", "client commits", "webhook commits"]
    labels = [(e.label, e.actor, e.kind) for e in timeline.events if e.label]
    assert labels[:4] == [
        ("T0", "client", "arrive"),
        ("T1", "webhook", "arrive"),
        ("T4", "client", "arrive"),
        ("T5", "webhook", "arrive"),
    ]
    assert controller.stalled is None


async def test_a_blocked_actor_is_skipped_not_waited_for() -> None:
    probe = FakeProbe()
    timeline = Timeline()
    controller = ScheduleController(["client", "webhook"], T0_T7, timeline, probe)
    log: list[str] = []
    client = asyncio.create_task(capture(controller, "client", log))
    lock_released = asyncio.Event()

    async def webhook() -> None:
        # Blocked on the client's lock until the client commits, like SELECT ... FOR UPDATE.
        await controller.may_start("webhook")
        probe.blocked_actors.add("webhook")
        await lock_released.wait()
        probe.blocked_actors.discard("webhook")
        log.append("webhook sees captured")
        controller.finished("webhook")

    async def release_on_commit() -> None:
        await client
        lock_released.set()

    hook = asyncio.create_task(webhook())
    releaser = asyncio.create_task(release_on_commit())
    await controller.drive()
    await asyncio.gather(client, hook, releaser)
    assert log == ["client writes", "client commits", "webhook sees captured"]
    blocked = [(e.label, e.actor) for e in timeline.events if e.kind == "blocked"]
    assert ("T1", "webhook") in blocked


async def test_rendezvous_holds_two_readers_then_lets_everyone_go() -> None:
    controller = ScheduleController(
        ["a", "b", "c"], Schedule.of("r", rendezvous("T1", quorum=2)), Timeline(), FakeProbe()
    )
    log = await play(controller, "a", "b", "c")
    # The first two writes happen only after both were held together at AFTER_READ.
    assert sorted(log) == sorted(f"{x} {y}" for x in "abc" for y in ("writes", "commits"))


async def test_a_stalled_step_is_an_error_and_releases_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(schedule_module, "STALL_TIMEOUT_S", 0.05)
    controller = ScheduleController(["client", "webhook"], T0_T7, Timeline(), FakeProbe())
    log: list[str] = []
    client = asyncio.create_task(capture(controller, "client", log))
    # The webhook starts but never reaches a point, never finishes and is never seen blocked.
    await controller.drive()
    await client
    assert controller.stalled is not None and "webhook" in controller.stalled
    assert log == ["client writes", "client commits"]


async def test_unknown_actors_and_late_arrivals_pass_straight_through() -> None:
    controller = ScheduleController(["client"], None, Timeline(), FakeProbe())
    await controller.drive()
    await asyncio.wait_for(controller.reached(AFTER_READ, "someone else"), 1.0)
    await asyncio.wait_for(controller.reached(AFTER_READ, "client"), 1.0)


def test_jitter_is_a_function_of_the_seed() -> None:
    first, again, other = Jitter("42|x"), Jitter("42|x"), Jitter("43|x")
    delays = [first.delay("client", AFTER_READ, n) for n in range(1, 6)]
    assert delays == [again.delay("client", AFTER_READ, n) for n in range(1, 6)]
    assert delays != [other.delay("client", AFTER_READ, n) for n in range(1, 6)]
    assert all(0 <= d <= schedule_module.MAX_JITTER_S for d in delays)
