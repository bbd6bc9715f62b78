"""The race timelines of results.json as swimlanes: lanes, marks and lock waits.

The harness (harness/timeline.py) writes one list per race result, typed by racebench.results:
events (`TimelineEvent`: `t_ms`, `actor`, `what`, `kind`, `label`, the schedule step T0...) and
lock waits (`LockWait`: `actor`, `start_ms`, `end_ms`, `wait_event`, `blocked_by`). racebench
reads only what it writes; the results reader has already refused anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from racebench.results import HARNESS_ACTOR, LockWait, RaceResult, TimelineEntry, TimelineEvent


@dataclass(frozen=True)
class Mark:
    t_ms: float
    actor: str
    text: str
    kind: str
    label: str = ""


@dataclass(frozen=True)
class Wait:
    actor: str
    start_ms: float
    end_ms: float
    text: str

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class Swimlanes:
    title: str
    actors: list[str]
    marks: list[Mark]  # request events, in time order
    notes: list[Mark]  # the harness's own events
    waits: list[Wait]

    @property
    def empty(self) -> bool:
        return not self.marks and not self.waits


def _wait(wait: LockWait) -> Wait:
    text = wait.wait_event or "lock"
    if wait.holders:
        text += f", blocked by {', '.join(wait.holders)}"
    elif wait.blocked_by:
        text += f", blocked by pid {', '.join(map(str, wait.blocked_by))}"
    return Wait(wait.actor, wait.start_ms, max(wait.start_ms, wait.end_ms), text)


def _mark(event: TimelineEvent) -> Mark:
    return Mark(event.t_ms, event.actor, event.what, event.kind, event.label)


def read_timeline(entries: Sequence[TimelineEntry], title: str) -> Swimlanes:
    marks = sorted(
        (_mark(e) for e in entries if isinstance(e, TimelineEvent)), key=lambda m: m.t_ms
    )
    waits = sorted((_wait(e) for e in entries if isinstance(e, LockWait)), key=lambda w: w.start_ms)
    actors = list(
        dict.fromkeys(m.actor for m in marks if m.actor != HARNESS_ACTOR)
        | dict.fromkeys(w.actor for w in waits)
    )
    return Swimlanes(
        title=title,
        actors=actors,
        marks=[m for m in marks if m.actor != HARNESS_ACTOR],
        notes=[m for m in marks if m.actor == HARNESS_ACTOR],
        waits=waits,
    )


# The scenario and strategies whose timelines the report draws: the documents' two diagrams.
TIMELINE_SCENARIO = "interleaved"
TIMELINE_STRATEGIES = ("none", "for_update")


def pick_timeline(race: list[RaceResult], scenario: str, strategy: str) -> RaceResult | None:
    """The result to draw for a cell: in-process first (schedules run there), with events."""
    candidates = [r for r in race if r.scenario == scenario and r.strategy == strategy]
    candidates.sort(key=lambda r: (not r.timeline, r.mode != "in_process"))
    return candidates[0] if candidates else None
