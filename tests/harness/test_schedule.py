"""The schedule controller on its own: fake actors, a fake probe, no database.

What it promises: actors are held where the schedule says, a blocked actor is skipped instead
of waited for, a step that did not happen (an actor that returned without reaching its point, a
rendezvous nobody reached, a failed commit) or that stalled ends in an error (never a hang, never
a pass), a committed actor runs through to its commit, and everyone is released at the end.
Synchronisation is by events only; nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from racebench.harness import controller as controller_module
from racebench.harness.controller import Jitter, ScheduleController
from racebench.harness.schedule import (
    Schedule,
    commit,
    hold_lock,
    launch,
    reach,
    rendezvous,
    restart_database,
)
from racebench.harness.timeline import Timeline
from racebench.reference_service.race_points import RacePoint

# A bound for what must happen at once (no actor is held): far above a few task switches.
SHORT_WAIT_S = 1.0

T0_T7 = Schedule.of(
    "T0-T7",
    reach("T0", "client", RacePoint.AFTER_READ),
    reach("T1", "webhook", RacePoint.AFTER_READ),
    reach("T4", "client", RacePoint.BEFORE_COMMIT),
    reach("T5", "webhook", RacePoint.BEFORE_COMMIT),
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


REFUSED = "400 signature_invalid"


async def capture(controller: ScheduleController, actor: str, log: list[str]) -> None:
    """What the service does: two race points, in order."""
    await controller.may_start(actor)
    log.append(f"{actor} reads")
    await controller.reached(RacePoint.AFTER_READ, actor)
    log.append(f"{actor} writes")
    await controller.reached(RacePoint.BEFORE_COMMIT, actor)
    log.append(f"{actor} commits")
    await controller.reached(RacePoint.AFTER_COMMIT, actor)  # never held: only drawn
    controller.finished(actor, succeeded=True, answer="200 captured")


async def refused(controller: ScheduleController, actor: str, log: list[str]) -> None:
    """A request the service refuses before the capture: it reaches no race point."""
    await controller.may_start(actor)
    log.append(f"{actor} refused")
    controller.finished(actor, succeeded=False, answer=REFUSED)


async def play(controller: ScheduleController, *actors: str, refuse: str = "") -> list[str]:
    log: list[str] = []
    tasks = [
        asyncio.create_task((refused if a in refuse.split(",") else capture)(controller, a, log))
        for a in actors
    ]
    await controller.drive()
    await asyncio.gather(*tasks)
    return log


def lines(timeline: Timeline) -> list[tuple[str, str, str, str]]:
    return [(e.label, e.actor, e.kind, e.what) for e in timeline.events]


async def test_t0_t7_interleaves_both_actors_before_either_commits() -> None:
    timeline = Timeline()
    controller = ScheduleController(["client", "webhook"], T0_T7, timeline, FakeProbe())
    log = await play(controller, "client", "webhook")
    assert log == [
        "client reads",
        "webhook reads",
        "client writes",
        "webhook writes",
        "client commits",
        "webhook commits",
    ]
    labels = [(e.label, e.actor, e.kind) for e in timeline.events if e.label]
    assert labels[:4] == [
        ("T0", "client", "arrive"),
        ("T1", "webhook", "arrive"),
        ("T4", "client", "arrive"),
        ("T5", "webhook", "arrive"),
    ]
    assert controller.broken is None
    commits = [
        (label, actor, what)
        for label, actor, kind, what in lines(timeline)
        if label in ("T6", "T7")
    ]
    assert commits == [
        ("T6", "client", "COMMIT"),
        ("T7", "webhook", "COMMIT"),
    ]


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
    assert log == ["client reads", "client writes", "client commits", "webhook sees captured"]
    blocked = [(e.label, e.actor) for e in timeline.events if e.kind == "blocked"]
    assert ("T1", "webhook") in blocked


async def test_rendezvous_holds_both_readers_until_both_have_read() -> None:
    controller = ScheduleController(
        ["a", "b"], Schedule.of("r", rendezvous("T1")), Timeline(), FakeProbe()
    )
    log = await play(controller, "a", "b")
    # Both reads happen before either actor writes: neither ran on alone past RacePoint.AFTER_READ.
    assert sorted(log[:2]) == ["a reads", "b reads"], log
    assert sorted(log[2:]) == ["a commits", "a writes", "b commits", "b writes"]
    assert controller.broken is None


async def test_rendezvous_of_three_holds_the_first_two_readers_together() -> None:
    controller = ScheduleController(
        ["a", "b", "c"], Schedule.of("r", rendezvous("T1", quorum=2)), Timeline(), FakeProbe()
    )
    log = await play(controller, "a", "b", "c")
    first_write = min(i for i, line in enumerate(log) if line.endswith("writes"))
    assert sum(1 for line in log[:first_write] if line.endswith("reads")) >= 2, log
    assert sorted(log) == sorted(f"{x} {y}" for x in "abc" for y in ("reads", "writes", "commits"))


async def test_a_rendezvous_that_nobody_reaches_is_an_error() -> None:
    timeline = Timeline()
    controller = ScheduleController(
        ["client", "webhook"], Schedule.of("r", rendezvous("T1")), timeline, FakeProbe()
    )
    await play(controller, "client", "webhook", refuse="client,webhook")
    assert controller.broken is not None and "rendezvous did not happen" in controller.broken
    assert REFUSED in controller.broken
    assert ("-", "error") in [(e.actor, e.kind) for e in timeline.events]


async def test_a_rendezvous_that_one_reaches_while_the_other_returns_is_an_error() -> None:
    controller = ScheduleController(
        ["client", "webhook"], Schedule.of("r", rendezvous("T1")), Timeline(), FakeProbe()
    )
    log = await play(controller, "client", "webhook", refuse="webhook")
    assert controller.broken is not None and "only 1 of 2" in controller.broken
    assert "client commits" in log  # released at the end all the same


async def test_a_rendezvous_that_may_be_skipped_is_not_an_error() -> None:
    controller = ScheduleController(
        ["client"], Schedule.of("r", rendezvous("T1", may_skip=True)), Timeline(), FakeProbe()
    )
    await play(controller, "client", refuse="client")
    assert controller.broken is None


async def test_a_reach_step_whose_actor_returns_without_reaching_is_an_error() -> None:
    timeline = Timeline()
    controller = ScheduleController(["client", "webhook"], T0_T7, timeline, FakeProbe())
    await play(controller, "client", "webhook", refuse="client,webhook")
    assert controller.broken is not None
    assert controller.broken.startswith("T0: client's request returned (400 signature_invalid)")
    # The schedule stops there: no later step, and above all no COMMIT, is on the timeline.
    assert [(label, actor, kind) for label, actor, kind, _ in lines(timeline) if label] == [
        ("T0", "client", "error")
    ]
    assert not any("COMMIT" in what for *_, what in lines(timeline))


async def test_a_reach_step_that_may_be_skipped_records_the_skip() -> None:
    timeline = Timeline()
    schedule = Schedule.of("s", reach("T0", "client", RacePoint.AFTER_READ, may_skip=True))
    controller = ScheduleController(["client"], schedule, timeline, FakeProbe())
    await play(controller, "client", refuse="client")
    assert controller.broken is None
    assert [(label, kind) for label, _, kind, _ in lines(timeline)] == [("T0", "release")]


async def test_a_commit_whose_request_failed_is_an_error_not_a_commit() -> None:
    timeline = Timeline()
    schedule = Schedule.of("s", commit("T6", "client"))
    controller = ScheduleController(["client"], schedule, timeline, FakeProbe())
    await play(controller, "client", refuse="client")
    assert controller.broken is not None and "nothing to COMMIT" in controller.broken
    assert not any(what.startswith("COMMIT") for *_, what in lines(timeline))


async def test_a_committed_actor_runs_through_its_later_points_to_its_commit() -> None:
    # out_of_order: first reads, the others read (or block) while it is open, then first commits
    # for good while the others are still held.
    schedule = Schedule.of(
        "first ahead",
        reach("T0", "first", RacePoint.AFTER_READ),
        reach("T1", "second", RacePoint.AFTER_READ),
        commit("T2", "first"),
        commit("T3", "second"),
    )
    timeline = Timeline()
    controller = ScheduleController(["first", "second"], schedule, timeline, FakeProbe())
    log = await play(controller, "first", "second")
    assert log == [
        "first reads",
        "second reads",
        "first writes",
        "first commits",
        "second writes",
        "second commits",
    ]
    assert ("T2", "first", "release", "COMMIT") in lines(timeline)
    assert controller.broken is None


async def test_a_stalled_step_is_an_error_and_releases_everyone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(controller_module, "STALL_TIMEOUT_S", 0.05)
    controller = ScheduleController(["client", "webhook"], T0_T7, Timeline(), FakeProbe())
    log: list[str] = []
    client = asyncio.create_task(capture(controller, "client", log))
    # The webhook starts but never reaches a point, never finishes and is never seen blocked.
    await controller.drive()
    await client
    assert controller.broken is not None and "webhook" in controller.broken
    assert log == ["client reads", "client writes", "client commits"]


async def test_unknown_actors_and_late_arrivals_pass_straight_through() -> None:
    schedule = Schedule.of("s", launch("T0", "client"), reach("T1", "client", RacePoint.AFTER_READ))
    controller = ScheduleController(["client"], schedule, Timeline(), FakeProbe())
    driving = asyncio.create_task(controller.drive())
    # While the schedule runs, an actor it does not know is not held.
    await asyncio.wait_for(controller.reached(RacePoint.AFTER_READ, "someone else"), SHORT_WAIT_S)
    client_reads = asyncio.create_task(controller.reached(RacePoint.AFTER_READ, "client"))
    await driving  # T1 saw the client arrive; the schedule is over and released it
    await asyncio.wait_for(client_reads, SHORT_WAIT_S)
    # A late arrival, after the schedule: straight through, at any point.
    await asyncio.wait_for(controller.reached(RacePoint.BEFORE_COMMIT, "client"), SHORT_WAIT_S)
    await asyncio.wait_for(controller.reached(RacePoint.AFTER_READ, "client"), SHORT_WAIT_S)
    assert controller.broken is None


def test_jitter_is_a_function_of_the_seed() -> None:
    first, again, other = Jitter("42|x"), Jitter("42|x"), Jitter("43|x")
    delays = [first.delay("client", RacePoint.AFTER_READ, n) for n in range(1, 6)]
    assert delays == [again.delay("client", RacePoint.AFTER_READ, n) for n in range(1, 6)]
    assert delays != [other.delay("client", RacePoint.AFTER_READ, n) for n in range(1, 6)]
    assert all(0 <= d <= controller_module.MAX_JITTER_S for d in delays)


# -- fault steps -----------------------------------------------------------------------------

HOLDER_PID = 4242


class FakeFaults:
    """Holds a pretend row lock (pid HOLDER_PID) and logs when it is taken and let go."""

    def __init__(self, log: list[str], *, restartable: bool = True) -> None:
        self.log = log
        self.restartable = restartable

    async def terminate(self, pid: int) -> bool:
        return True

    @asynccontextmanager
    async def hold_row_lock(self, payment_id: int) -> AsyncIterator[int]:
        self.log.append(f"lock {payment_id} taken")
        try:
            yield HOLDER_PID
        finally:
            self.log.append(f"lock {payment_id} let go")

    def cannot_restart(self) -> str | None:
        return None if self.restartable else "not ours to restart"

    async def restart(self) -> float:
        self.log.append("restarted")
        return 0.0


class HolderProbe(FakeProbe):
    """Blocked actors are held up by `by` (the harness's holder, or some other backend)."""

    def __init__(self, by: int = HOLDER_PID) -> None:
        super().__init__()
        self.by = by

    async def blocked(self, actor: str, others_in_flight: int) -> str | None:
        return (
            f"on Lock/transactionid: UPDATE payments waits for pid {self.by}'s row lock"
            if actor in self.blocked_actors
            else None
        )


HELD = Schedule.of("held", hold_lock("T0", "delivery"))


async def blocked_until_timeout(
    controller: ScheduleController, probe: FakeProbe, log: list[str], lock_timeout: asyncio.Event
) -> None:
    """What the service does under a held row lock: block, time out, answer 503."""
    await controller.may_start("delivery")
    probe.blocked_actors.add("delivery")
    await lock_timeout.wait()
    probe.blocked_actors.discard("delivery")
    log.append("delivery times out")
    controller.finished("delivery", succeeded=False, answer="503 busy")


async def test_hold_lock_holds_until_the_blocked_actor_times_out() -> None:
    log: list[str] = []
    probe, timeline = HolderProbe(), Timeline()
    controller = ScheduleController(
        ["delivery"], HELD, timeline, probe, faults=FakeFaults(log), payments={"delivery": 7}
    )
    lock_timeout = asyncio.Event()
    actor = asyncio.create_task(blocked_until_timeout(controller, probe, log, lock_timeout))
    driving = asyncio.create_task(controller.drive())
    # The step must not end (nor let the lock go) while the actor is still blocked.
    for _ in range(10_000):  # task switches, not time: the step records the block at once
        if any(e.kind == "blocked" for e in timeline.events):
            break
        await asyncio.sleep(0)
    assert log == ["lock 7 taken"] and not driving.done()
    lock_timeout.set()
    await asyncio.gather(actor, driving)
    assert controller.broken is None
    assert log == ["lock 7 taken", "delivery times out", "lock 7 let go"]
    assert (
        "T0",
        "delivery",
        "blocked",
        f"on Lock/transactionid: UPDATE payments waits for pid {HOLDER_PID}'s row lock",
    ) in (lines(timeline))


async def test_a_hold_that_holds_nothing_up_is_an_error() -> None:
    """The lock did not hold: the actor captured straight through it."""
    log: list[str] = []
    controller = ScheduleController(
        ["delivery"],
        HELD,
        Timeline(),
        HolderProbe(),
        faults=FakeFaults(log),
        payments={"delivery": 7},
    )
    await play(controller, "delivery")
    assert controller.broken is not None
    assert "never seen blocked by the harness's lock" in controller.broken
    assert log == ["lock 7 taken", "lock 7 let go"]


async def test_an_actor_blocked_by_someone_else_is_not_the_held_lock() -> None:
    log: list[str] = []
    probe = HolderProbe(by=99)
    controller = ScheduleController(
        ["delivery"], HELD, Timeline(), probe, faults=FakeFaults(log), payments={"delivery": 7}
    )
    lock_timeout = asyncio.Event()
    lock_timeout.set()
    probe.blocked_actors.add("delivery")
    await controller.drive()
    assert controller.broken is not None and "waits for pid 99's" in controller.broken
    await blocked_until_timeout(controller, probe, log, lock_timeout)


def test_the_holder_is_read_from_the_evidence_by_whole_pid() -> None:
    assert controller_module._blockers(
        "on Lock/tuple: UPDATE payments waits for pid 12, pid 4242's row lock"
    ) == {12, 4242}
    assert 424 not in controller_module._blockers("on Lock/tuple: x waits for pid 4242's lock")
    assert controller_module._blockers("on Lock/tuple: x waits for client's row lock") == set()
    assert controller_module._blockers("on an asyncio.Lock (app_lock)") == set()


async def test_a_hold_on_an_unknown_payment_is_an_error() -> None:
    controller = ScheduleController(
        ["delivery"], HELD, Timeline(), HolderProbe(), faults=FakeFaults([])
    )
    await play(controller, "delivery")
    assert controller.broken is not None and "which payment" in controller.broken


async def test_restart_database_on_a_server_not_ours_is_an_error_that_says_why() -> None:
    log: list[str] = []
    schedule = Schedule.of(
        "r", reach("T0", "client", RacePoint.AFTER_READ), restart_database("T1", "client")
    )
    controller = ScheduleController(
        ["client"], schedule, Timeline(), FakeProbe(), faults=FakeFaults(log, restartable=False)
    )
    await play(controller, "client")
    assert controller.broken == "T1: cannot restart the database: not ours to restart"
    assert log == []


async def test_restart_database_lets_its_actors_go_after_the_restart_and_waits_for_them() -> None:
    log: list[str] = []
    schedule = Schedule.of(
        "r", reach("T0", "client", RacePoint.AFTER_READ), restart_database("T1", "client")
    )
    controller = ScheduleController(
        ["client"], schedule, Timeline(), FakeProbe(), faults=FakeFaults(log)
    )
    order = await play(controller, "client")
    assert controller.broken is None
    assert log == ["restarted"]
    assert order == ["client reads", "client writes", "client commits"]


async def test_a_commit_reported_before_its_commit_step_is_labelled_not_drawn_twice() -> None:
    """for_update over http: the webhook waits for the client's row lock, sees "captured" once
    the client commits, and commits itself before the client's request has even returned,
    so before step T7 begins. T7 labels that COMMIT; no second, synthetic one is drawn. What it
    did on arrival (T3) is drawn before its wait, not inside it."""
    schedule = Schedule.of(
        "T0-T7, the webhook blocked",
        reach("T0", "client", RacePoint.AFTER_READ),
        reach(
            "T1",
            "webhook",
            RacePoint.AFTER_READ,
            also=(("T3", "verified signature on arrival: valid"),),
        ),
        commit("T6", "client"),
        commit("T7", "webhook"),
    )
    probe = FakeProbe()
    timeline = Timeline()
    controller = ScheduleController(["client", "webhook"], schedule, timeline, probe)
    client_committed, webhook_committed = asyncio.Event(), asyncio.Event()

    async def client() -> None:
        await controller.may_start("client")
        await controller.reached(RacePoint.AFTER_READ, "client")
        await controller.reached(RacePoint.BEFORE_COMMIT, "client")
        await controller.reached(RacePoint.AFTER_COMMIT, "client")
        client_committed.set()
        await webhook_committed.wait()  # its answer is late: the webhook commits first
        controller.finished("client", answer="200 captured")

    async def webhook() -> None:
        await controller.may_start("webhook")
        timeline.add("webhook", "sends webhook payment.captured", "send")
        probe.blocked_actors.add("webhook")
        await client_committed.wait()
        probe.blocked_actors.discard("webhook")
        await controller.reached(RacePoint.ALREADY_CAPTURED, "webhook")
        await controller.reached(RacePoint.AFTER_COMMIT, "webhook")
        webhook_committed.set()
        controller.finished("webhook", answer="200 processed")

    tasks = [asyncio.create_task(client()), asyncio.create_task(webhook())]
    await controller.drive()
    await asyncio.gather(*tasks)
    assert controller.broken is None
    webhook_events = [(e.label, e.kind, e.what) for e in timeline.events if e.actor == "webhook"]
    assert [w for w in webhook_events if "COMMIT" in w[2]] == [("T7", "release", "COMMIT")]
    send = next(e for e in timeline.events if e.kind == "send")
    blocked = next(e for e in timeline.events if e.kind == "blocked")
    t3 = next(e for e in timeline.events if e.label == "T3")
    assert send.t_ms == t3.t_ms <= blocked.t_ms
