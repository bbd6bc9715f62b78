"""report.html: one self-contained page. Images are data: URIs, the style is inline, and there
is no script, font or stylesheet to fetch, so it opens offline exactly as it was written."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

from racebench.reports.gate import GateResult
from racebench.reports.tables import Table, TableCell


@dataclass(frozen=True)
class Image:
    title: str
    png: bytes | None  # None: nothing to draw; `missing` says why
    caption: str = ""
    missing: str = "no data in this run"
    text: str = ""  # an optional text form (the timeline's events), shown folded


@dataclass(frozen=True)
class Page:
    title: str
    facts: list[tuple[str, str]]
    performance: list[Table]
    matrix: Table
    charts: list[Image]
    timelines: list[Image]
    gate: GateResult | None = None
    race_gate: GateResult | None = None
    explore: Table | None = None
    explore_timelines: list[Image] = field(default_factory=list)
    hints: Table | None = None
    hints_sql: str = ""  # HTML, already escaped (reports/hints.py)


HINTS_HEADING = "Hints: the service's own SQL, read for the unguarded read-then-write"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1c2833; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; }
table { border-collapse: collapse; margin: .6rem 0; }
th, td { border: 1px solid #d5d8dc; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
td .delta { color: #1f618d; }
.note { color: #7f8c8d; font-size: .82rem; }
.good { color: #1e8449; } .bad { color: #c0392b; font-weight: 600; } .warn { color: #b9770e; }
.notes { color: #566573; font-size: .85rem; margin: .2rem 0; }
figure { margin: 1.2rem 0; } figcaption { color: #566573; font-size: .85rem; }
img { max-width: 100%; border: 1px solid #eaecee; }
.missing { color: #7f8c8d; font-style: italic; }
.facts td:first-child { color: #566573; }
pre { background: #f8f9f9; padding: .6rem; overflow-x: auto; font-size: .8rem; }
.verdict-ok { color: #1e8449; } .verdict-fail { color: #c0392b; }
.hint { border-left: 3px solid #d5d8dc; padding-left: .8rem; margin: 1rem 0; }
.hint .role { margin: .5rem 0 0; } pre.sql { white-space: pre-wrap; margin-top: .2rem; }
pre.sql b { color: #1f618d; } mark { background: #fcf3cf; padding: 0 .1em; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(cell: TableCell) -> str:
    parts = [f'<span class="{cell.tone}">{escape(cell.text)}</span>']
    if cell.delta:
        parts.append(f' <span class="delta">({escape(cell.delta)})</span>')
    if cell.note:
        parts.append(f'<div class="note">{escape(cell.note)}</div>')
    return f"<td>{''.join(parts)}</td>"


def table_html(table: Table, level: int = 2) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join(
        f"<tr><th>{escape(row.label)}</th>{''.join(_cell(c) for c in row.cells)}</tr>"
        for row in table.rows
    )
    notes = "".join(f'<p class="notes">{escape(n)}</p>' for n in table.notes)
    return (
        f"<h{level}>{escape(table.title)}</h{level}>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"
    )


def image_html(image: Image) -> str:
    if image.png is None:
        inner = f'<p class="missing">{escape(image.title)}: {escape(image.missing)}</p>'
    else:
        inner = f'<img src="{data_uri(image.png)}" alt="{escape(image.title)}">'
    caption = f"<figcaption>{escape(image.caption)}</figcaption>" if image.caption else ""
    text = (
        f"<details><summary>events as text</summary><pre>{escape(image.text)}</pre></details>"
        if image.text
        else ""
    )
    return f"<figure>{inner}{caption}{text}</figure>"


def gate_html(title: str, gate: GateResult) -> str:
    verdict = (
        '<span class="verdict-ok">passed</span>'
        if gate.passed
        else '<span class="verdict-fail">FAILED</span>'
    )
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td>"
        f'<td class="{"good" if c.passed else "bad"}">{"ok" if c.passed else "FAIL"}</td>'
        f"<td>{escape(c.detail)}</td></tr>"
        for c in gate.checks
    )
    return (
        f"<h2>{escape(title)}: {verdict}</h2><table><thead><tr><th>check</th><th>result</th>"
        f"<th>detail</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_page(page: Page) -> str:
    facts = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in page.facts)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(page.title)}</h1>",
        f'<table class="facts"><tbody>{facts}</tbody></table>',
    ]
    if page.race_gate is not None:
        parts.append(gate_html("Race gate", page.race_gate))
    if page.gate is not None:
        parts.append(gate_html("Performance gate against the baseline", page.gate))
    parts += [table_html(t) for t in page.performance]
    parts.append(table_html(page.matrix))
    parts.append("<h2>Charts</h2>")
    parts += [image_html(i) for i in page.charts]
    parts.append("<h2>Timelines of the interleaved scenario</h2>")
    parts.append(
        '<p class="notes">The T0-T7 schedule of the write-up this race comes from (a checkout '
        "callback and a Razorpay webhook capturing one payment; README.md, Where this comes "
        "from), forced with race points. Time flows "
        "down, one row per event; a hatched red bar is a wait on a row lock as PostgreSQL "
        "reported it (pg_stat_activity, wait_event_type = 'Lock').</p>"
    )
    parts += [image_html(i) for i in page.timelines]
    if page.explore is not None:
        parts.append(table_html(page.explore))
        parts += [image_html(i) for i in page.explore_timelines]
    if page.hints is not None or page.hints_sql:
        parts.append(f"<h2>{escape(HINTS_HEADING)}</h2>")
        if page.hints is not None:
            parts.append(table_html(page.hints, level=3))
        if page.hints_sql:
            parts.append(page.hints_sql)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
