"""Schedules: the steps that force an interleaving of the capture paths at the race points.

A schedule is a short script of steps, each naming an actor, in the manner of Hermitage:

    T0  client   reach AFTER_READ       client reads the payment: pending
    T1  webhook  reach AFTER_READ       webhook reads it too (or BLOCKS on a lock)
    T4  client   reach BEFORE_COMMIT    client writes
    ...

This module is the language: what each step means. harness/controller.py plays a schedule
(ScheduleController). A schedule that did not happen is an error, never a pass: an actor whose
request returned without reaching the point its `reach` step waits for, a rendezvous that
nobody (or too few, with nobody blocked) reached, an actor whose `commit` step ends in a failed
request. A step that may legitimately be skipped says so (`may_skip=True`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from racebench.reference_service.race_points import RacePoint

POINT_WORDS: dict[str, str] = {
    RacePoint.AFTER_READ: "reads payment: status = pending",
    RacePoint.BEFORE_COMMIT: "UPDATE payment, invoice; COMMIT next",
}

StepKind = Literal[
    "reach", "commit", "rendezvous", "launch", "kill_backend", "hold_lock", "restart_database"
]


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    label: str
    actors: tuple[str, ...] = ()
    point: RacePoint = RacePoint.AFTER_READ
    note: str = ""
    quorum: int = 2
    may_skip: bool = False  # finishing without reaching the point is not an error
    also: tuple[tuple[str, str], ...] = ()
    """Further (label, words) the timeline draws with the step: what the actor did by then."""


def reach(
    label: str,
    actor: str,
    point: RacePoint,
    note: str = "",
    *,
    may_skip: bool = False,
    also: tuple[tuple[str, str], ...] = (),
) -> Step:
    """`actor` runs (or starts) until it reaches `point` or blocks. If its request returns
    without reaching `point`, the schedule did not happen: an error, unless `may_skip`.
    `also`: further (label, words) to draw with it (what the actor has done by then)."""
    return Step(
        "reach",
        label,
        (actor,),
        point,
        note or POINT_WORDS.get(point, point),
        may_skip=may_skip,
        also=also,
    )


def commit(label: str, actor: str, note: str = "COMMIT") -> Step:
    """`actor` is let go for good: it runs through its later race points to its commit, and the
    step waits until its request returns (or it blocks). A failed request is an error."""
    return Step("commit", label, (actor,), RacePoint.BEFORE_COMMIT, note)


def kill_backend(label: str, actor: str, at: RacePoint, note: str = "") -> Step:
    """A fault: `actor` runs until it is held at `at`; then its PostgreSQL backend is killed
    (pg_terminate_backend, waiting until it is gone) and the actor is let go for good. The
    step waits until its request returns: its transaction is lost, whatever it answers. If the
    actor returns (or blocks) without reaching `at`, the schedule did not happen: an error."""
    return Step(
        "kill_backend", label, (actor,), at, note or "backend killed (pg_terminate_backend)"
    )


def hold_lock(label: str, actor: str, note: str = "") -> Step:
    """A fault: the harness takes the row lock of `actor`'s payment (SELECT ... FOR UPDATE on
    its own connection) and holds it; then `actor` is started and let go for good. Every
    strategy's capture writes that row, so the actor blocks on the held lock (whether it reads
    with a lock or not) until the service's lock_timeout fires: its request fails (503 busy,
    with Retry-After) and its transaction rolls back. The lock is released when the actor's
    request has returned.

    The step did not happen (an error) if the actor is never seen blocked by the harness's
    lock, or if it answers 2xx while the lock is held."""
    return Step("hold_lock", label, (actor,), note=note or "harness holds the payment's row lock")


def restart_database(label: str, *actors: str, note: str = "") -> Step:
    """A fault: restart the database server (`pg_ctl -m fast restart`: every connection is cut,
    the transactions of actors held at a point with them) and wait until it accepts
    connections again; then `actors` are let go for good, and the step waits until their
    requests return, whatever they answer. Only a server the harness owns (the embedded one it
    started) can be restarted; on any other the step is an error that says so, never a silent
    pass."""
    return Step(
        "restart_database", label, actors, note=note or "database restarted (pg_ctl -m fast)"
    )


def launch(label: str, *actors: str) -> Step:
    """Start `actors` without waiting for them (they are held at the first point they reach)."""
    return Step("launch", label, actors, note="start")


def rendezvous(
    label: str,
    point: RacePoint = RacePoint.AFTER_READ,
    quorum: int = 2,
    note: str = "",
    *,
    may_skip: bool = False,
) -> Step:
    """Start everyone; hold each arrival at `point` until `quorum` actors are there together,
    or until someone is blocked (a lock lets only one through), then let them all go.

    If the actors finish first (fewer than `quorum` arrived and nobody is blocked), the
    rendezvous did not happen: an error, unless `may_skip`."""
    return Step(
        "rendezvous",
        label,
        (),
        point,
        note or f"{quorum} read pending together",
        quorum,
        may_skip,
    )


@dataclass(frozen=True)
class Schedule:
    name: str
    steps: tuple[Step, ...]

    @classmethod
    def of(cls, name: str, *steps: Step) -> Schedule:
        return cls(name, steps)
