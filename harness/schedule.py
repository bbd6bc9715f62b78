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

StepKind = Literal["reach", "commit", "rendezvous", "launch", "kill_backend"]


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
