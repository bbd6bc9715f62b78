"""A race timeline drawn as swimlanes, in the style of the documents' T0-T7 diagrams: one lane
per actor, time flowing down, one row per event, and each lock wait as a hatched bar."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from racebench.reports.figures import BAD, GOOD, MUTED, new_figure, png
from racebench.reports.timeline import Swimlanes

# hundred_way has a hundred actors; four lanes are what a page can show side by side.
MAX_LANES = 4
# Inches: the time column, one lane, the harness-notes column, one event row.
TIME_WIDTH = 1.5
LANE_WIDTH = 4.3
NOTES_WIDTH = 3.0
ROW_HEIGHT = 0.3
HEADER_HEIGHT = 1.1
# Longer event texts wrap onto more lines so they stay inside their lane (never cut).
MAX_TEXT_CHARS = 62
# Inches kept free right of the widest text: the figure grows until every text fits.
RIGHT_MARGIN = 0.2
# The fill of a lock wait's hatched bar (its edge and hatching are BAD).
WAIT_FILL = "#fadbd8"
TONES = {"blocked": BAD, "error": BAD, "lock_wait": BAD, "lock_granted": GOOD, "answer": GOOD}


@dataclass(frozen=True)
class _Row:
    t_ms: float
    lane: int | None  # None: a harness note
    text: str
    kind: str
    label: str = ""


def _rows(lanes: Swimlanes, actors: list[str]) -> list[_Row]:
    rows = [
        _Row(m.t_ms, actors.index(m.actor), m.text, m.kind, m.label)
        for m in lanes.marks
        if m.actor in actors
    ]
    rows += [_Row(n.t_ms, None, n.text, n.kind, n.label) for n in lanes.notes]
    for w in lanes.waits:
        if w.actor not in actors:
            continue
        lane = actors.index(w.actor)
        rows.append(_Row(w.start_ms, lane, f"BLOCKED (waiting for lock): {w.text}", "lock_wait"))
        rows.append(
            _Row(w.end_ms, lane, f"lock granted after {w.duration_ms:.1f} ms", "lock_granted")
        )
    # Stable: at equal times, a grant comes before the step it allowed.
    return sorted(rows, key=lambda r: (r.t_ms, r.kind != "lock_granted"))


def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, MAX_TEXT_CHARS, break_long_words=True)) or text


def draw_swimlanes(lanes: Swimlanes) -> bytes | None:
    """The timeline as a PNG, or None when it holds nothing to draw."""
    figure = swimlane_figure(lanes)
    return None if figure is None else png(figure)


def swimlane_figure(lanes: Swimlanes) -> Figure | None:
    """The timeline drawn, as wide as its widest text needs (no text is ever cut at the
    image's edge: a long RESULT note widens the figure), or None with nothing to draw."""
    if lanes.empty:
        return None
    actors = lanes.actors[:MAX_LANES]
    rows = _rows(lanes, actors)
    # Each row is as tall as its wrapped text; tops[i] is where row i starts (in rows).
    heights = [_wrap(r.text).count("\n") + 1 for r in rows]
    tops = [sum(heights[:i]) for i in range(len(rows) + 1)]
    width = TIME_WIDTH + LANE_WIDTH * len(actors) + (NOTES_WIDTH if lanes.notes else 0.3)
    height = HEADER_HEIGHT + ROW_HEIGHT * (tops[-1] + 2)
    figure = new_figure(width, height, constrained=False)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")

    def lane_x(lane: int) -> float:
        return TIME_WIDTH + LANE_WIDTH * lane + 0.25

    def row_y(index: int) -> float:
        if index >= len(rows):
            return HEADER_HEIGHT + ROW_HEIGHT * (tops[-1] + 0.5)
        return HEADER_HEIGHT + ROW_HEIGHT * (tops[index] + heights[index] / 2)

    total_wait = sum(w.duration_ms for w in lanes.waits)
    subtitle = f"lock wait {total_wait:.1f} ms" if lanes.waits else "no lock wait"
    ax.text(0.1, 0.3, f"{lanes.title}  ({subtitle})", fontsize=11, weight="bold", va="center")
    bottom = row_y(len(rows))
    for lane, actor in enumerate(actors):
        x = lane_x(lane)
        box = FancyBboxPatch(
            (x - 0.1, 0.55), LANE_WIDTH - 0.6, 0.4, boxstyle="round,pad=0.02", fc="#eef2f7"
        )
        ax.add_patch(box)
        ax.text(x + 0.05, 0.75, actor, fontsize=10, weight="bold", va="center")
        ax.annotate(
            "", xy=(x, bottom), xytext=(x, HEADER_HEIGHT - 0.1),
            arrowprops={"arrowstyle": "-|>", "color": MUTED, "lw": 1.2},
        )  # fmt: skip
    notes_x = TIME_WIDTH + LANE_WIDTH * len(actors)
    if lanes.notes:
        ax.text(notes_x, 0.75, "harness", fontsize=9, color=MUTED, style="italic", va="center")

    for i, row in enumerate(rows):
        y = row_y(i)
        stamp = f"{row.label}  " if row.label else ""
        ax.text(
            TIME_WIDTH - 0.15, y, f"{stamp}{row.t_ms:.1f} ms",
            ha="right", va="center", fontsize=8, color=MUTED, family="monospace",
        )  # fmt: skip
        if row.lane is None:
            ax.text(notes_x, y, _wrap(row.text), va="center", fontsize=7.5, color=MUTED)
            continue
        x = lane_x(row.lane)
        tone = TONES.get(row.kind, "black")
        ax.plot([x], [y], "o", color=tone, ms=4, zorder=3)
        ax.text(x + 0.15, y, _wrap(row.text), va="center", fontsize=8, color=tone)

    for lane in range(len(actors)):
        start: int | None = None
        for i, row in enumerate(rows):
            if row.lane != lane:
                continue
            if row.kind == "lock_wait":
                start = i
            elif row.kind == "lock_granted" and start is not None:
                top, end = row_y(start), row_y(i)
                bar = Rectangle(
                    (lane_x(lane) - 0.09, top), 0.18, end - top,
                    hatch="////", fc=WAIT_FILL, ec=BAD, lw=0.8, zorder=2,
                )  # fmt: skip
                ax.add_patch(bar)
                start = None

    footer = []
    if len(lanes.actors) > MAX_LANES:
        footer.append(f"{len(lanes.actors) - MAX_LANES} more actors not drawn")
    if footer:
        ax.text(0.1, bottom + 0.25, "; ".join(footer), fontsize=7.5, color=MUTED, va="center")
    _fit_width(figure, width)
    return figure


def _fit_width(figure: Figure, width: float) -> None:
    """Widen the figure (one data unit stays one inch) until its widest text fits."""
    renderer = FigureCanvasAgg(figure).get_renderer()  # what savefig draws with
    right = max(
        (t.get_window_extent(renderer).x1 for t in figure.axes[0].texts),
        default=0.0,
    )
    needed = right / figure.dpi + RIGHT_MARGIN
    if needed > width:
        height = figure.get_size_inches()[1]
        figure.set_size_inches(needed, height)
        figure.axes[0].set_xlim(0, needed)


def timeline_text(lanes: Swimlanes) -> str:
    """The same timeline as plain text, one line per event (for the page's folded view)."""
    rows = [(m.t_ms, m.label, m.actor, m.text) for m in (*lanes.marks, *lanes.notes)]
    rows += [
        (w.start_ms, "", w.actor, f"waits for lock {w.duration_ms:.1f} ms: {w.text}")
        for w in lanes.waits
    ]
    rows.sort(key=lambda r: r[0])
    return "\n".join(
        f"{t:9.1f} ms  {label:<4} {actor:<12} {text}" for t, label, actor, text in rows
    )
