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

from racebench.console import LOG_WIDTH
from racebench.results import (
    HARNESS_ACTOR,
    EventKind,
    LockWait,
    TimelineEntry,
    TimelineEvent,
    starts_ms,
)

# Columns of the text diagram: as wide as the console allows between these; longer text
# continues on the next line, in the same column.
MIN_COLUMN_WIDTH = 28
MAX_COLUMN_WIDTH = 64
# A lock wait's query is shown up to this many characters (SQL is long, the gist is early).
QUERY_PREVIEW_CHARS = 60
# Lock waits listed under a diagram; hundred_way has dozens, and the first ones tell the story.
MAX_LOCK_WAIT_LINES = 12

__all__ = [
    "COMMIT_WORDS",
    "ROLLBACK_WORDS",
    "EventKind",
    "LockWait",
    "Timeline",
    "TimelineEvent",
    "ordering_errors",
    "render",
]


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

    def ms(self, at: float) -> float:
        """A time.perf_counter() moment (of this process or a worker's) in this timeline's ms."""
        return round((at - self._start) * 1000.0, 3)

    def add(
        self, actor: str, what: str, kind: EventKind, label: str = "", at: float | None = None
    ) -> TimelineEvent:
        """Record an event now, or at `at` (time.perf_counter(), when it happened)."""
        event = TimelineEvent(
            kind=kind,
            actor=actor,
            t_ms=round(self.now_ms(), 3) if at is None else self.ms(at),
            what=what,
            label=label,
        )
        self.events.append(event)
        return event

    def note(self, what: str, label: str = "") -> None:
        self.add(HARNESS_ACTOR, what, "note", label)

    def entries(self) -> list[TimelineEntry]:
        """Events and lock waits, one list in time order (results.json's `timeline`)."""
        return sorted([*self.events, *self.lock_waits], key=starts_ms)


def _granted(wait: LockWait, events: Sequence[TimelineEvent]) -> str:
    """ "lock granted after 8.5 ms (client committed)": each holder with how its transaction
    ended last before the grant (COMMIT or ROLLBACK, as drawn)."""
    ended: list[str] = []
    for holder in wait.holders:
        ends = [
            e
            for e in events
            if e.actor == holder and e.what in ENDING_WORDS and e.t_ms <= wait.end_ms
        ]
        last = max(ends, key=lambda e: e.t_ms) if ends else None
        how = "rolled back" if last is not None and last.what == ROLLBACK_WORDS else "committed"
        ended.append(f"{holder} {how}")
    holders = f" ({', '.join(ended)})" if ended else ""
    return f"lock granted after {wait.end_ms - wait.start_ms:.1f} ms{holders}"


def _blockers(wait: LockWait) -> str:
    if wait.holders:
        return ", ".join(wait.holders)
    pids = ", ".join(map(str, wait.blocked_by[:4]))
    return f"pid {pids}{', ...' if len(wait.blocked_by) > 4 else ''}" if pids else "?"


def render(
    entries: Sequence[TimelineEntry], title: str, max_actors: int = 4, width: int = LOG_WIDTH
) -> str:
    """The timeline (as stored in results.json) as a text diagram, one column per actor, no
    line wider than `width` (longer text wraps, never cut).

    With more than `max_actors` actors (hundred_way) only the first ones get a column; the
    others are summarised in one line each at the end. A lock wait's end is drawn in its
    actor's column ("lock granted"), when the lock was granted.
    """
    events = [e for e in entries if isinstance(e, TimelineEvent)]
    waits = [e for e in entries if isinstance(e, LockWait)]
    actors: list[str] = []
    for row in events:
        if row.actor != HARNESS_ACTOR and row.actor not in actors:
            actors.append(row.actor)
    shown = actors[:max_actors]
    lead_width = len(f"{'':>4} {0.0:7.1f}ms ")
    fit = (width - lead_width) // max(1, len(shown))
    column = max(MIN_COLUMN_WIDTH, min(MAX_COLUMN_WIDTH, fit))
    lines = [*textwrap.wrap(title, width), ""]
    if len(actors) > len(shown):
        hidden = sum(1 for row in events if row.actor not in shown and row.actor != HARNESS_ACTOR)
        lines.append(f"(showing {len(shown)} of {len(actors)} actors; {hidden} events hidden)")
    lines.append((" " * lead_width + "".join(f"{a:<{column}}" for a in shown)).rstrip())
    lines.append((" " * lead_width + "".join(f"{'|':<{column}}" for _ in shown)).rstrip())
    rows: list[tuple[float, int, str, str, str, str]] = [
        (e.t_ms, 1, e.label, e.actor, f"{_MARKS.get(e.kind, '')}{e.what}", e.kind) for e in events
    ]
    rows += [
        (w.end_ms, 0, "", w.actor, _granted(w, events), "granted")
        for w in waits
        if w.actor in shown
    ]
    rows.sort(key=lambda r: (r[0], r[1]))
    for t_ms, _, label, actor, text, _kind in rows:
        lead = f"{label:>4} {t_ms:7.1f}ms "
        if actor == HARNESS_ACTOR:
            pieces = textwrap.wrap(f"-- {text}", width - lead_width, subsequent_indent="   ")
            lines.append(lead + pieces[0])
            lines.extend(" " * lead_width + piece for piece in pieces[1:])
            continue
        if actor not in shown:
            continue
        at = shown.index(actor)
        # Long text (a lock's evidence) goes on continuation lines, never lost.
        pieces = textwrap.wrap(text, column - 1, break_long_words=True) or [""]
        for i, piece in enumerate(pieces):
            cells = [f"{'|':<{column}}"] * len(shown)
            cells[at] = piece.ljust(column) if i == 0 else f"  {piece}".ljust(column)
            lines.append(((lead if i == 0 else " " * lead_width) + "".join(cells)).rstrip())
    if waits:
        lines.append("")
        lines.append("lock waits (pg_stat_activity, wait_event_type = 'Lock'):")
        for w in waits[:MAX_LOCK_WAIT_LINES]:
            query = _preview(w.query)
            text = (
                f"  {w.actor:<12} {w.start_ms:7.1f} .. {w.end_ms:7.1f} ms  "
                f"{w.wait_event:<20} blocked by {_blockers(w)}: {query}"
            )
            lines.extend(textwrap.wrap(text, width, subsequent_indent=" " * 6))
        if len(waits) > MAX_LOCK_WAIT_LINES:
            lines.append(f"  ... {len(waits) - MAX_LOCK_WAIT_LINES} more")
    return "\n".join(lines)


def _preview(query: str) -> str:
    """The statement on one line; a long one ends at a word, with ' ...' to say so."""
    flat = " ".join(query.split())
    if len(flat) <= QUERY_PREVIEW_CHARS:
        return flat
    return flat[:QUERY_PREVIEW_CHARS].rsplit(" ", 1)[0] + " ..."


_MARKS = {"blocked": "BLOCKS ", "error": "!! "}

COMMIT_WORDS = "COMMIT"
ROLLBACK_WORDS = "ROLLBACK"
ENDING_WORDS = (COMMIT_WORDS, ROLLBACK_WORDS)
# What the controller draws when a request returned after its commit step and no COMMIT was
# reported (a service that does not report it).
UNREPORTED_COMMIT = "its COMMIT was not reported"


def ordering_errors(entries: Sequence[TimelineEntry]) -> list[str]:
    """The ordering rules a true timeline keeps; each broken one in words (none: [])."""
    events = [e for e in entries if isinstance(e, TimelineEvent) and e.actor != HARNESS_ACTOR]
    waits = [e for e in entries if isinstance(e, LockWait)]
    by_actor: dict[str, list[TimelineEvent]] = {}
    for e in sorted(events, key=lambda e: e.t_ms):
        by_actor.setdefault(e.actor, []).append(e)
    wrong: list[str] = []

    def commits(actor: str) -> list[float]:
        return [e.t_ms for e in by_actor.get(actor, []) if e.what == COMMIT_WORDS]

    def ends(actor: str) -> list[TimelineEvent]:
        """Its transactions' ends, as drawn: COMMIT and ROLLBACK, in time order."""
        return [e for e in by_actor.get(actor, []) if e.what in ENDING_WORDS]

    def one_request(actor: str) -> bool:
        """A name that sent its own requests. Over http with more actors than workers
        (hundred_way) a holder is known only as "worker N": that name stands for every
        transaction of the worker, and the one that held the lock may have rolled back
        (serializable) while a sibling committed later. No rule can be checked on it."""
        return any(e.kind == "send" for e in by_actor.get(actor, []))

    # 1. The holder's COMMIT (or ROLLBACK) comes before the waiter's acquisition, and one is
    #    drawn: a wait never ends with no visible cause.
    for w in waits:
        holders = [h for h in w.holders if h != w.actor and one_request(h)]
        seen_end = False
        for holder in holders:
            after = [e for e in ends(holder) if e.t_ms >= w.start_ms]
            before = [e for e in ends(holder) if e.t_ms < w.start_ms]
            end = after[0] if after else (before[-1] if before else None)
            seen_end = seen_end or end is not None
            if end is not None and end.t_ms > w.end_ms:
                how = "rolled back" if end.what == ROLLBACK_WORDS else "committed"
                wrong.append(
                    f"{w.actor} got the lock at {w.end_ms:.1f} ms, before its holder {holder} "
                    f"{how} at {end.t_ms:.1f} ms"
                )
        if holders and not seen_end:
            wrong.append(
                f"{w.actor}'s lock wait ended at {w.end_ms:.1f} ms with no COMMIT or ROLLBACK "
                f"of its holder ({', '.join(holders)}) drawn"
            )
        # 4. Nothing of the waiter is drawn inside its own wait but the wait itself (a worker
        #    known only by its pid runs many transactions, and is not one waiter).
        inside = [
            e
            for e in by_actor.get(w.actor, [])
            if w.start_ms < e.t_ms < w.end_ms and e.kind not in ("blocked", "note")
        ]
        inside = inside if one_request(w.actor) else []
        if inside:
            wrong.append(
                f"{w.actor}: {inside[0].what!r} at {inside[0].t_ms:.1f} ms, inside its own lock "
                f"wait ({w.start_ms:.1f} .. {w.end_ms:.1f} ms)"
            )
    for actor, rows in by_actor.items():
        sends = [e.t_ms for e in rows if e.kind == "send"]
        if not sends:
            continue
        # 3. No event comes before its actor's request was sent.
        early = [e for e in rows if e.t_ms < sends[0]]
        early_waits = [w for w in waits if w.actor == actor and w.start_ms < sends[0]]
        if early or early_waits:
            what = early[0].what if early else f"lock wait at {early_waits[0].start_ms:.1f} ms"
            wrong.append(f"{actor}: {what!r} before its request was sent at {sends[0]:.1f} ms")
        # 5. A reported COMMIT is never followed by a synthetic one in the same request.
        for i, sent in enumerate(sends):
            until = sends[i + 1] if i + 1 < len(sends) else float("inf")
            mine = [e for e in rows if sent <= e.t_ms < until]
            reported = [e.t_ms for e in mine if e.what == COMMIT_WORDS]
            synthetic = [e for e in mine if e.what.endswith(UNREPORTED_COMMIT)]
            if reported and synthetic:
                wrong.append(
                    f"{actor}: {synthetic[0].what!r} at {synthetic[0].t_ms:.1f} ms, after its "
                    f"COMMIT at {reported[0]:.1f} ms"
                )
        # 2. COMMIT comes before the answer (each request: between its send and its answer).
        for i, sent in enumerate(sends):
            until = sends[i + 1] if i + 1 < len(sends) else float("inf")
            answers = [e.t_ms for e in rows if e.kind == "answer" and sent <= e.t_ms < until]
            for t in commits(actor):
                if answers and sent <= t < until and t > answers[0]:
                    wrong.append(
                        f"{actor}: COMMIT at {t:.1f} ms after its answer at {answers[0]:.1f} ms"
                    )
    return wrong
