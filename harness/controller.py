"""The race-point controller that plays a schedule (harness/schedule.py) during one run.

An actor that reaches a point is held there until the schedule lets it go; after its `commit`
step it runs through to its commit, and later points let it pass. When the schedule waits for
an actor that cannot reach its point because it is blocked (a row lock, an advisory lock, the
webhook claim index, or an in-process asyncio.Lock), a `BlockProbe` reports that and the
schedule moves on; it never waits for something its own holds prevent. Every wait is bounded
(STALL_TIMEOUT_S), and when the schedule ends, however it ends, every held actor is released.
A step that did not happen as written raises ScheduleBroken: the run is then an error.

Fault steps (kill_backend, hold_lock, restart_database) act on the database through `Faults`
(harness/faults.py), and are errors too when the fault did not take: a kill with no backend to
kill, a held lock nobody was seen waiting on, a server the harness may not restart.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from racebench.harness.schedule import POINT_WORDS, Schedule, Step
from racebench.harness.timeline import (
    COMMIT_WORDS,
    ROLLBACK_WORDS,
    UNREPORTED_COMMIT,
    EventKind,
)
from racebench.reference_service import race_points
from racebench.reference_service.race_points import HOLDING_POINTS, RacePoint
from racebench.results import TimelineEvent

# How often a waiting schedule asks whether its actor is blocked. A capture step takes about a
# millisecond; 5 ms keeps the probe's own queries from loading the 2-core machine.
PROBE_INTERVAL_S = 0.005
# The longest a schedule waits for one step. Far above any honest step (milliseconds) and far
# below the service's lock_timeout (5 s) times a few retries; past it the run is an error.
STALL_TIMEOUT_S = 10.0
# Seeded jitter after a release: up to about one capture's duration, enough to shuffle the
# order of the statements that follow without making a run slow.
MAX_JITTER_S = 0.002


_PID = re.compile(r"\bpid (\d+)")


def _blockers(evidence: str) -> set[int]:
    """The backend pids a probe's evidence names as holding the lock: "... waits for pid 7's
    row lock" (a holder that is no actor, such as the harness's own connection, goes by pid)."""
    _, found, holders = evidence.partition(" waits for ")
    return {int(p) for p in _PID.findall(holders)} if found else set()


class Outcome(StrEnum):
    ARRIVED = "arrived"
    BLOCKED = "blocked"
    FINISHED = "finished"


class BlockProbe(Protocol):
    """Tells a schedule whether an actor is blocked, with the evidence."""

    async def blocked(self, actor: str, others_in_flight: int) -> str | None:
        """Evidence that `actor` waits on a lock, or None.

        `others_in_flight` counts other actors that are running and not held by the schedule;
        a probe that cannot tell backends apart must see more lock waiters than that.
        """
        ...

    async def anyone_blocked(self) -> str | None:
        """Evidence that some actor waits on a lock, or None."""
        ...


class Faults(Protocol):
    """Injects a schedule's faults into the database (harness/faults.py: DatabaseFaults)."""

    async def terminate(self, pid: int) -> bool:
        """pg_terminate_backend(pid), waiting until the backend is gone; False if it was not
        there."""
        ...

    def hold_row_lock(self, payment_id: int) -> contextlib.AbstractAsyncContextManager[int]:
        """Hold the payment's row lock (FOR UPDATE, on a connection of the harness's own) for
        the block; yields the backend pid that holds it."""
        ...

    def cannot_restart(self) -> str | None:
        """Why the database cannot be restarted here, or None if it can."""
        ...

    async def restart(self) -> float:
        """Restart the database server and reconnect the harness; the seconds it took."""
        ...


# What the timeline says when an actor reports a point it is not held at.
REPORT_WORDS: dict[str, str] = {
    RacePoint.ALREADY_CAPTURED: "reads payment: status = captured; already captured, skipped",
    RacePoint.AFTER_COMMIT: COMMIT_WORDS,
    RacePoint.AFTER_ROLLBACK: ROLLBACK_WORDS,
}
# The points that end a transaction: its locks are gone once they are reported.
ENDING_POINTS = frozenset({RacePoint.AFTER_COMMIT, RacePoint.AFTER_ROLLBACK})


class Recorder(Protocol):
    events: list[TimelineEvent]

    def add(
        self, actor: str, what: str, kind: EventKind, label: str = "", at: float | None = None
    ) -> TimelineEvent: ...
    def note(self, what: str, label: str = "") -> None: ...


class ScheduleBroken(Exception):
    """The schedule did not play as written: the run is an error, whatever the invariants say."""


class ScheduleStalled(ScheduleBroken):
    """A step waited past STALL_TIMEOUT_S."""


class Jitter:
    """Seeded random pauses after race points: the same seed gives the same pauses."""

    def __init__(self, seed: str) -> None:
        self.seed = seed

    def delay(self, actor: str, point: str, hit: int) -> float:
        return random.Random(f"{self.seed}|{actor}|{point}|{hit}").uniform(0.0, MAX_JITTER_S)


@dataclass(eq=False)
class _Actor:
    name: str
    started: asyncio.Event = field(default_factory=asyncio.Event)
    held_at: str | None = None
    release: asyncio.Future[None] | None = None
    finished: bool = False
    succeeded: bool = False  # its request answered 2xx
    answer: str = ""  # how its request ended, in a few words ("200 captured", "400 ...")
    free: bool = False  # past its commit step: later points let it pass
    payment: int | None = None  # the payment its request is about (a hold_lock step's row)
    hits: dict[str, int] = field(default_factory=dict)
    stranger: bool = False  # not a registered actor: an anonymous arrival (http mode)
    backend: int | None = None  # the PostgreSQL backend pid of its transaction, at its last point
    arrival: TimelineEvent | None = None  # its last arrival at a holding point, as drawn
    commit_label: str = ""  # the schedule step that let it commit (T6, ...)
    committed: bool = False  # it reported a COMMIT since its commit step began
    # Its last COMMIT, drawn before any commit step named it (it ran free, or its commit step
    # had not begun): the commit step that finds it returned labels this one.
    unclaimed_commit: TimelineEvent | None = None
    waiting: bool = False  # drawn BLOCKED, and nothing it did drawn since


@dataclass(frozen=True, slots=True, order=True)
class Report:
    """One race point an actor reported: when (perf_counter), on which backend."""

    at: float
    backend: int
    actor: str
    done: float = 0.0  # a COMMIT: when the harness heard of it (it had returned by then)


class ScheduleController:
    """The race-point controller of one run: holds actors where the schedule says.

    Without a schedule it holds nobody (only jitter applies). Actors that the harness did not
    register (or that reach a point after the schedule is over) pass straight through, unless
    `hold_strangers` is set: then each such arrival is held as an anonymous actor, which a
    rendezvous counts (http mode with more actors than workers cannot name them).
    """

    def __init__(
        self,
        actors: Iterable[str],
        schedule: Schedule | None,
        recorder: Recorder,
        probe: BlockProbe,
        jitter: Jitter | None = None,
        *,
        hold_strangers: bool = False,
        faults: Faults | None = None,
        payments: Mapping[str, int] | None = None,
    ) -> None:
        self.schedule = schedule
        self.faults = faults
        self.hold_strangers = hold_strangers
        self.recorder = recorder
        self.probe = probe
        self.jitter = jitter
        self._actors = {name: _Actor(name) for name in actors}
        for name, payment in (payments or {}).items():
            if name in self._actors:
                self._actors[name].payment = payment
        self._changed = asyncio.Event()
        self._done = schedule is None
        self.reports: list[Report] = []
        """Every point reported with its backend, in time order: who a backend served when."""
        self.broken: str | None = None
        """Why the schedule did not play as written (None: it did); the run is then an error."""
        if schedule is None:
            for state in self._actors.values():
                state.started.set()

    # -- the actors' side ------------------------------------------------------------------

    async def may_start(self, actor: str) -> None:
        """Wait until the schedule lets `actor` send its request."""
        await self._actors[actor].started.wait()

    def finished(self, actor: str, *, succeeded: bool = True, answer: str = "") -> None:
        """The actor's request has returned (the runner calls this, error or not): `succeeded`
        if it answered 2xx, and `answer` in a few words for the timeline."""
        state = self._actors.get(actor)
        if state is not None:
            state.finished, state.succeeded, state.answer = True, succeeded, answer
            self._changed.set()

    async def reached(self, point: str, actor: str | None, backend: int | None = None) -> None:
        """RaceController: called by the service at a race point. `backend`: the PostgreSQL
        backend pid of the actor's transaction, when the call comes from another process (the
        http gate); in process it is read from the service's context variable."""
        name = actor or "?"
        state = self._actors.get(name)
        if state is None and self.hold_strangers and not self._done:
            name = f"{name}#{len(self._actors)}"
            state = self._actors[name] = _Actor(name, stranger=True)
            state.started.set()
        at = race_points.point_time.get() or time.perf_counter()
        if backend is None:
            backend = race_points.current_backend.get()
        if backend is not None and actor is not None:
            done = time.perf_counter() if point in ENDING_POINTS else 0.0
            bisect.insort(self.reports, Report(at, backend, name, done))
        if point not in HOLDING_POINTS:
            if state is not None:
                state.waiting = False
            self._reported(point, name, state, at, actor is not None)
            return
        if state is not None:
            state.waiting = False
            state.unclaimed_commit = None  # a new transaction's step: an earlier COMMIT is done
        hit = 1
        if state is not None:
            hit = state.hits[point] = state.hits.get(point, 0) + 1
            state.backend = backend
        if actor is not None:  # drawn when it happens; a step that waited for it labels it
            event = self.recorder.add(name, POINT_WORDS.get(point, point), "arrive", at=at)
            if state is not None:
                state.arrival = event
        if state is not None and state.release is not None:
            # Already held elsewhere: a second request under one name. Holding it would orphan
            # the first one's release (a hang), so it goes on, and the timeline says so.
            self.recorder.note(f"{name} reported {point} while held at {state.held_at}")
        elif state is not None and not self._done and not state.free:
            state.held_at = point
            state.release = asyncio.get_running_loop().create_future()
            self._changed.set()
            try:
                await state.release
            finally:
                state.held_at, state.release = None, None
        if self.jitter is not None:
            await asyncio.sleep(self.jitter.delay(name, point, hit))

    def _reported(
        self, point: str, name: str, state: _Actor | None, at: float, known: bool
    ) -> None:
        """A point nobody is held at (a COMMIT, a skip): drawn at the moment it happened."""
        if not known:
            return  # the harness's own setup requests
        label = ""
        if point == RacePoint.AFTER_COMMIT and state is not None and state.commit_label:
            label, state.commit_label, state.committed = state.commit_label, "", True
        kind: EventKind = "release" if point in ENDING_POINTS else "arrive"
        event = self.recorder.add(name, REPORT_WORDS.get(point, point), kind, label, at=at)
        if point == RacePoint.AFTER_COMMIT and state is not None and not label:
            state.unclaimed_commit = event

    def routing_failed(self, why: str) -> None:
        """The target could not keep an actor on the worker it was given. The report still
        names the right actor; the timeline says why two actors may share a worker's state
        (app_lock over http races only across workers)."""
        self.recorder.note(f"routing: {why}")

    def actor_on(self, backend: int, at: float) -> Report | None:
        """The first report on `backend` at or after `at`: the actor whose transaction the
        backend served then (a backend is pooled: it serves many actors, one at a time), and
        when that actor next did something."""
        i = bisect.bisect_left(self.reports, Report(at, -1, ""))
        for report in self.reports[i:]:
            if report.backend == backend:
                return report
        return None

    def holder_on(self, backend: int, at: float) -> Report | None:
        """The actor whose transaction `backend` served at `at`: the one that reported on it
        last, unless that was a COMMIT already returned by then (the next one's, then)."""
        i = bisect.bisect_right(self.reports, Report(at, 1 << 62, "\uffff"))
        for report in reversed(self.reports[:i]):
            if report.backend == backend:
                if not report.done or at <= report.done:
                    return report
                break
        return self.actor_on(backend, at)

    def actor_before(self, backend: int, at: float) -> str | None:
        """The actor holding `backend`'s transaction at `at`, if known (a holder seen now)."""
        report = self.holder_on(backend, at)
        return report.actor if report is not None else None

    # -- the schedule's side -----------------------------------------------------------------

    async def drive(self) -> None:
        """Play the schedule; whatever happens, release everyone at the end."""
        try:
            if self.schedule is not None:
                for step in self.schedule.steps:
                    await self._play(step)
        except ScheduleBroken as broken:
            self.broken = str(broken)
            self.recorder.add("-", f"schedule broken: {broken}", "error")
        except Exception as error:  # a probe that failed: report it, never hang the actors
            self.broken = f"{type(error).__name__}: {error}"
            self.recorder.add("-", f"schedule failed: {self.broken}", "error")
        finally:
            self._done = True
            for state in self._actors.values():
                state.started.set()
                self._let_go(state)

    async def _play(self, step: Step) -> None:
        if step.kind == "launch":
            for name in step.actors:
                self._actors[name].started.set()
            self.recorder.note(f"launch {', '.join(step.actors)}", step.label)
        elif step.kind == "rendezvous":
            await self._rendezvous(step)
        elif step.kind == "kill_backend":
            await self._kill_backend(step)
        elif step.kind == "hold_lock":
            await self._hold_lock(step)
        elif step.kind == "restart_database":
            await self._restart_database(step)
        else:
            state = self._actors[step.actors[0]]
            if step.kind == "commit":
                state.commit_label, state.committed = step.label, False
                state.free = True  # from now on it is never held: it runs to its commit
                self._let_go(state)
            elif state.held_at is not None and state.held_at != step.point:
                self._let_go(state)
            state.started.set()
            outcome, detail = await self._wait_for(state)
            self._record(step, state, outcome, detail)

    async def _kill_backend(self, step: Step) -> None:
        state = self._actors[step.actors[0]]
        if state.held_at is not None and state.held_at != step.point:
            self._let_go(state)
        state.started.set()
        outcome, _ = await self._wait_for(state)
        if outcome is not Outcome.ARRIVED or state.held_at != step.point:
            why = "returned" if outcome is Outcome.FINISHED else "blocked"
            self.recorder.add(state.name, f"{why} before {step.point}: no backend to kill", "error")
            raise ScheduleBroken(f"{step.label}: {state.name} {why} without reaching {step.point}")
        pid = state.backend
        if self.faults is None or pid is None:
            raise ScheduleBroken(f"{step.label}: which backend serves {state.name} is unknown")
        if not await self.faults.terminate(pid):
            raise ScheduleBroken(f"{step.label}: {state.name}'s backend pid {pid} was not there")
        self.recorder.add(state.name, f"{step.note}: pid {pid}", "error", step.label)
        state.free = True
        self._let_go(state)
        outcome, detail = await self._wait_for(state)
        if outcome is Outcome.BLOCKED:
            self.recorder.add(state.name, detail, "blocked", step.label)
        else:
            self.recorder.add(state.name, f"answered {state.answer}", "release", step.label)

    async def _hold_lock(self, step: Step) -> None:
        state = self._actors[step.actors[0]]
        if self.faults is None or state.payment is None:
            raise ScheduleBroken(
                f"{step.label}: which payment {state.name}'s request is about is unknown"
            )
        async with self.faults.hold_row_lock(state.payment) as holder:
            self.recorder.add(
                state.name,
                f"{step.note}: payment {state.payment}, pid {holder}",
                "note",
                step.label,
            )
            state.free = True
            self._let_go(state)
            state.started.set()
            outcome, detail = await self._wait_for(state)
            if outcome is not Outcome.BLOCKED or holder not in _blockers(detail):
                seen = detail or f"returned ({state.answer or 'no answer'})"
                self.recorder.add(state.name, f"never blocked by the held lock: {seen}", "error")
                raise ScheduleBroken(
                    f"{step.label}: {state.name} was never seen blocked by the harness's lock "
                    f"(pid {holder}): {seen}"
                )
            self.recorder.add(state.name, detail, "blocked", step.label)
            await self._until_finished(state, f"{state.name} still blocked on the held lock")
            if state.succeeded:
                self.recorder.add(state.name, f"answered {state.answer} through the lock", "error")
                raise ScheduleBroken(
                    f"{step.label}: {state.name} answered {state.answer} while the harness held "
                    f"its payment's row lock: the lock held nothing up"
                )
        self.recorder.add(
            state.name, f"answered {state.answer}; lock released", "release", step.label
        )

    async def _restart_database(self, step: Step) -> None:
        why = "no fault injector" if self.faults is None else self.faults.cannot_restart()
        if why is not None or self.faults is None:
            self.recorder.add("-", f"cannot restart the database: {why}", "error", step.label)
            raise ScheduleBroken(f"{step.label}: cannot restart the database: {why}")
        took = await self.faults.restart()
        self.recorder.note(f"{step.note}; back in {took:.2f} s", step.label)
        for name in step.actors:
            state = self._actors[name]
            state.free = True
            self._let_go(state)
            state.started.set()
            await self._until_finished(state, f"{name} did not return after the restart")
            self.recorder.add(name, f"answered {state.answer}", "release", step.label)

    async def _until_finished(self, state: _Actor, what: str) -> None:
        """Until the actor's request has returned (bounded by STALL_TIMEOUT_S)."""
        deadline = asyncio.get_running_loop().time() + STALL_TIMEOUT_S
        while not state.finished:
            self._changed.clear()
            if state.finished:
                break
            await self._pause(deadline, what)

    def _record(self, step: Step, state: _Actor, outcome: Outcome, detail: str) -> None:
        """Put the step's outcome on the timeline; raise ScheduleBroken if it did not happen.

        What an actor does is drawn when it happens (reached()); a step labels it."""
        if outcome is Outcome.BLOCKED:
            what = "still blocked (the same wait)" if state.waiting else detail
            self.recorder.add(state.name, what, "blocked", step.label)
            state.waiting = True
        elif outcome is Outcome.FINISHED and step.kind == "commit":
            if not state.succeeded:
                what = f"request failed ({state.answer or 'no answer'}): no {step.note}"
                self.recorder.add(state.name, what, "error", step.label)
                raise ScheduleBroken(
                    f"{step.label}: {state.name}'s request failed ({state.answer or 'no answer'})"
                    f", so there was nothing to {step.note}"
                )
            if state.committed:
                pass
            elif state.unclaimed_commit is not None:  # it committed before the step began
                state.commit_label = ""
                state.unclaimed_commit.label = state.unclaimed_commit.label or step.label
                state.unclaimed_commit = None
            else:  # a service that does not report its commit
                state.commit_label = ""
                what = f"returned ({state.answer}); {UNREPORTED_COMMIT}"
                self.recorder.add(state.name, what, "release", step.label)
        elif outcome is Outcome.FINISHED:
            what = (
                f"{step.label}: {state.name}'s request returned "
                f"({state.answer or 'no answer'}) without reaching {step.point}"
            )
            if not step.may_skip:
                words = f"returned ({state.answer or 'no answer'}) without reaching {step.point}"
                self.recorder.add(state.name, words, "error", step.label)
                raise ScheduleBroken(what)
            self.recorder.add(
                state.name,
                f"returned ({state.answer}) before {step.point}: skipped",
                "release",
                step.label,
            )
        elif state.arrival is not None:
            state.arrival.label = step.label
            if state.held_at == step.point and step.kind == "reach":
                state.arrival.what = step.note
        if outcome is not Outcome.FINISHED or step.kind != "commit":
            self._also(step, state, blocked=outcome is Outcome.BLOCKED)

    def _also(self, step: Step, state: _Actor, *, blocked: bool = False) -> None:
        """The step's further labels (the documents' T2, T3), drawn with its own event; when
        the step found the actor blocked, with the last thing it did before the wait (what it
        did on arrival was done then, not inside its lock wait)."""
        arrival = state.arrival
        at_ms = arrival.t_ms if arrival is not None and arrival.label == step.label else None
        if blocked:
            before = [
                e.t_ms
                for e in self.recorder.events
                if e.actor == state.name and e.kind != "blocked" and e.label != step.label
            ]
            at_ms = max(before) if before else at_ms
        for label, words in step.also:
            added = self.recorder.add(state.name, words, "arrive", label)
            if at_ms is not None:
                added.t_ms = at_ms

    def _let_go(self, state: _Actor) -> None:
        """Release the actor from the point it is held at, if any."""
        if state.release is not None and not state.release.done():
            state.release.set_result(None)
            state.held_at = None
            # Nothing tells the harness when an anonymous actor's request returns.
            state.finished = state.finished or state.stranger

    def in_flight(self) -> list[str]:
        """Actors started, not held at a point and not finished (running, or blocked)."""
        return [
            s.name
            for s in self._actors.values()
            if s.started.is_set() and not s.finished and s.held_at is None
        ]

    def _in_flight(self, exclude: _Actor) -> int:
        return sum(
            1
            for s in self._actors.values()
            if s is not exclude and s.started.is_set() and not s.finished and s.held_at is None
        )

    async def _wait_for(self, state: _Actor) -> tuple[Outcome, str]:
        """Until the actor is held at a point, has finished, or is seen blocked."""
        deadline = asyncio.get_running_loop().time() + STALL_TIMEOUT_S
        while True:
            self._changed.clear()
            if state.held_at is not None:
                return Outcome.ARRIVED, state.held_at
            if state.finished:
                return Outcome.FINISHED, ""
            evidence = await self.probe.blocked(state.name, self._in_flight(state))
            if evidence is not None:
                return Outcome.BLOCKED, evidence
            await self._pause(deadline, f"{state.name} neither arrived, finished nor blocked")

    async def _rendezvous(self, step: Step) -> None:
        for state in self._actors.values():
            state.started.set()
        deadline = asyncio.get_running_loop().time() + STALL_TIMEOUT_S
        while True:
            self._changed.clear()
            held = [s for s in self._actors.values() if s.held_at == step.point]
            live = [s for s in self._actors.values() if not s.finished]
            if len(held) >= step.quorum:
                why = step.note
                break
            if held:
                evidence = await self.probe.anyone_blocked()
                if evidence is not None:
                    why = f"{len(held)} through, others blocked: {evidence}"
                    break
            if len(held) == len(live):  # the rest returned without reaching the point
                done = [s for s in self._actors.values() if s.finished]
                answers = sorted({s.answer or "no answer" for s in done})
                why = (
                    f"only {len(held)} of {step.quorum} reached {step.point}; "
                    f"{len(done)} returned before it ({', '.join(answers)})"
                )
                if not step.may_skip:
                    self.recorder.note(f"rendezvous did not happen: {why}", step.label)
                    raise ScheduleBroken(f"{step.label}: rendezvous did not happen: {why}")
                break
            await self._pause(deadline, f"rendezvous at {step.point}: {len(held)} arrived")
        self.recorder.note(f"rendezvous: {why}; released together", step.label)
        for state in held:
            self._let_go(state)

    async def _pause(self, deadline: float, what: str) -> None:
        """Wait for a change or the next probe; raise ScheduleStalled past the deadline."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise ScheduleStalled(f"{what} within {STALL_TIMEOUT_S:.0f} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), min(PROBE_INTERVAL_S, remaining))
