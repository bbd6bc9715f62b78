"""A tolerant reader of the race timelines in results.json: lanes, marks and lock waits.

The harness (harness/timeline.py) writes one list of dicts per race result. Events carry
`t_ms`, `actor`, `what`, `kind` (send, arrive, blocked, release, answer, note, error) and `label`
(the schedule step, T0...). Lock waits carry `kind: "lock_wait"`, `actor`, `start_ms`, `end_ms`,
`wait_event` and `blocked_by`. This reader also accepts the obvious synonyms below, skips what
it cannot place, and says how much it skipped, so a change on the writing side degrades the
picture instead of breaking the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from racebench.results import RaceResult

ACTOR_KEYS = ("actor", "lane", "who", "tx")
TEXT_KEYS = ("what", "step", "name", "event", "message", "label")
LABEL_KEYS = ("label", "tick")
TIME_KEYS = ("t_ms", "at_ms", "time_ms", "ts_ms", "start_ms")
START_KEYS = ("start_ms", "t_ms", "at_ms")
END_KEYS = ("end_ms", "until_ms")
KIND_KEYS = ("kind", "type")
LOCK_WAIT_KINDS = frozenset({"lock_wait", "lock-wait", "wait", "waiting"})
HARNESS_ACTOR = "-"  # events of the harness itself (schedule notes), not of a request


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
    skipped: int = 0  # rows the reader could not place
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.marks and not self.waits


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return value
    return None


def _time(row: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    value = _first(row, keys)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _wait_text(row: Mapping[str, Any]) -> str:
    text = str(row.get("wait_event") or "lock")
    blocked_by = row.get("blocked_by")
    if blocked_by:
        text += f", blocked by {blocked_by}"
    return text


def read_timeline(rows: Sequence[Mapping[str, Any]], title: str) -> Swimlanes:
    marks: list[Mark] = []
    waits: list[Wait] = []
    open_waits: list[tuple[str, float, str]] = []
    skipped = 0
    for row in rows:
        if not isinstance(row, Mapping):
            skipped += 1
            continue
        kind = str(_first(row, KIND_KEYS) or "").lower()
        actor = str(_first(row, ACTOR_KEYS) or HARNESS_ACTOR)
        if kind in LOCK_WAIT_KINDS:
            start = _time(row, START_KEYS)
            if start is None:
                skipped += 1
                continue
            end = _time(row, END_KEYS)
            if end is None:
                open_waits.append((actor, start, _wait_text(row)))
            else:
                waits.append(Wait(actor, start, max(start, end), _wait_text(row)))
            continue
        t = _time(row, TIME_KEYS)
        text = _first(row, TEXT_KEYS)
        if t is None or text is None:
            skipped += 1
            continue
        label = _first(row, LABEL_KEYS)
        label = "" if label is None or label == text else str(label)
        marks.append(Mark(t, actor, str(text), kind or "step", label))
    marks.sort(key=lambda m: m.t_ms)
    last = max([m.t_ms for m in marks] + [w.end_ms for w in waits], default=0.0)
    problems = []
    for actor, start, text in open_waits:
        # A wait with no end lasted at least until the last thing the timeline saw.
        waits.append(Wait(actor, start, max(start, last), text + " (end not recorded)"))
        problems.append(f"a lock wait of {actor} has no end time")
    if skipped:
        problems.append(f"{skipped} timeline rows had no time or text and were left out")
    actors = list(
        dict.fromkeys(m.actor for m in marks if m.actor != HARNESS_ACTOR)
        | dict.fromkeys(w.actor for w in waits)
    )
    return Swimlanes(
        title=title,
        actors=actors,
        marks=[m for m in marks if m.actor != HARNESS_ACTOR],
        notes=[m for m in marks if m.actor == HARNESS_ACTOR],
        waits=sorted(waits, key=lambda w: w.start_ms),
        skipped=skipped,
        problems=problems,
    )


# The scenario and strategies whose timelines the report draws: the documents' two diagrams.
TIMELINE_SCENARIO = "interleaved"
TIMELINE_STRATEGIES = ("none", "for_update")


def pick_timeline(race: list[RaceResult], scenario: str, strategy: str) -> RaceResult | None:
    """The result to draw for a cell: in-process first (schedules run there), with events."""
    candidates = [r for r in race if r.scenario == scenario and r.strategy == strategy]
    candidates.sort(key=lambda r: (not r.timeline, r.mode != "in_process"))
    return candidates[0] if candidates else None
