"""What happened when in one scenario run: each actor's steps, and its waits on locks.

A timeline is data (events with a time, an actor and what it did or saw, plus the lock waits
PostgreSQL reported); `render()` draws it as text in the style of the documents' T0-T7 diagrams.
Computing it (harness/runner.py, harness/schedule.py) is kept apart from showing it. The
entries are the results contract's own types (racebench.results: TimelineEvent, LockWait): what
is written here is what results.json holds and the report reads.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence

from racebench.results import (
    HARNESS_ACTOR,
    EventKind,
    LockWait,
    TimelineEntry,
    TimelineEvent,
    starts_ms,
)

# Columns of the text diagram: wide enough for "BLOCKS on Lock/transactionid"; longer text
# continues on the next line, in the same column.
COLUMN_WIDTH = 44
# A lock wait's query is shown up to this many characters (SQL is long, the gist is early).
QUERY_PREVIEW_CHARS = 60
# Lock waits listed under a diagram; hundred_way has dozens, and the first ones tell the story.
MAX_LOCK_WAIT_LINES = 12

__all__ = ["EventKind", "LockWait", "Timeline", "TimelineEvent", "render"]


class Timeline:
    """Events and lock waits of one run, timed from its creation."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.events: list[TimelineEvent] = []
        self.lock_waits: list[LockWait] = []

    def restart(self) -> None:
        """Make now time 0 (events so far keep their times)."""
        self._start = time.perf_counter()

    def now_ms(self) -> float:
        return (time.perf_counter() - self._start) * 1000.0

    def add(self, actor: str, what: str, kind: EventKind, label: str = "") -> None:
        self.events.append(
            TimelineEvent(
                kind=kind, actor=actor, t_ms=round(self.now_ms(), 3), what=what, label=label
            )
        )

    def note(self, what: str, label: str = "") -> None:
        self.add(HARNESS_ACTOR, what, "note", label)

    def entries(self) -> list[TimelineEntry]:
        """Events and lock waits, one list in time order (results.json's `timeline`)."""
        return sorted([*self.events, *self.lock_waits], key=starts_ms)


def render(entries: Sequence[TimelineEntry], title: str, max_actors: int = 4) -> str:
    """The timeline (as stored in results.json) as a text diagram, one column per actor.

    With more than `max_actors` actors (hundred_way) only the first ones get a column; the
    others are summarised in one line each at the end.
    """
    events = [e for e in entries if isinstance(e, TimelineEvent)]
    waits = [e for e in entries if isinstance(e, LockWait)]
    actors: list[str] = []
    for row in events:
        if row.actor != HARNESS_ACTOR and row.actor not in actors:
            actors.append(row.actor)
    shown = actors[:max_actors]
    lines = [title, ""]
    if len(actors) > len(shown):
        hidden = sum(1 for row in events if row.actor not in shown and row.actor != HARNESS_ACTOR)
        lines.append(f"(showing {len(shown)} of {len(actors)} actors; {hidden} events hidden)")
    header = " " * 14 + "".join(f"{a:<{COLUMN_WIDTH}}" for a in shown)
    lines.append(header.rstrip())
    lines.append(" " * 14 + "".join(f"{'|':<{COLUMN_WIDTH}}" for _ in shown).rstrip())
    for row in events:
        label = f"{row.label:>4}" if row.label else "    "
        stamp = f"{row.t_ms:7.1f}ms "
        if row.actor == HARNESS_ACTOR:
            lines.append(f"{label} {stamp} -- {row.what}")
            continue
        if row.actor not in shown:
            continue
        column = shown.index(row.actor)
        mark = _MARKS.get(row.kind, "")
        # Long text (a lock's evidence) goes on continuation lines, cut at spaces, never lost.
        pieces = textwrap.wrap(f"{mark}{row.what}", COLUMN_WIDTH - 1, break_long_words=False) or [
            ""
        ]
        for i, piece in enumerate(pieces):
            cells = [f"{'|':<{COLUMN_WIDTH}}"] * len(shown)
            cells[column] = (
                piece.ljust(COLUMN_WIDTH) if i == 0 else f"  {piece}".ljust(COLUMN_WIDTH)
            )
            lead = f"{label} {stamp}" if i == 0 else " " * len(f"{label} {stamp}")
            lines.append((lead + "".join(cells)).rstrip())
    if waits:
        lines.append("")
        lines.append("lock waits (pg_stat_activity, wait_event_type = 'Lock'):")
        for w in waits[:MAX_LOCK_WAIT_LINES]:
            blockers: list[int | str] = [
                *w.blocked_by[:4],
                *(["..."] if len(w.blocked_by) > 4 else []),
            ]
            query = " ".join(w.query.split())[:QUERY_PREVIEW_CHARS]
            lines.append(
                f"  {w.actor:<12} {w.start_ms:7.1f} .. {w.end_ms:7.1f} ms  "
                f"{w.wait_event:<22} blocked by {blockers}  {query}"
            )
        if len(waits) > MAX_LOCK_WAIT_LINES:
            lines.append(f"  ... {len(waits) - MAX_LOCK_WAIT_LINES} more")
    return "\n".join(lines)


_MARKS = {"blocked": "BLOCKS ", "error": "!! "}
