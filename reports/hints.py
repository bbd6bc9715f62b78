"""racebench hints in the report: one row per variant x hint with its confirmation, a gate check
per variant (as expected or not), and each hint's SQL highlighted: keywords in bold and the
hint's tables and columns marked, tokenised by PostgreSQL's own scanner (pglast), never by a
regular expression. A confirmed hint's failing schedule is drawn as swimlanes, as explore's are.

Everything that comes from results.json is escaped: the SQL is the service's, and a string
literal in it may hold anything."""

from __future__ import annotations

from collections.abc import Collection
from html import escape

from pglast.parser import ParseError, scan

from racebench.harness.hints.rules import TOP
from racebench.reports.gate import Check
from racebench.reports.markdown import document
from racebench.reports.page import HINTS_HEADING, Image, image_html
from racebench.reports.swimlanes import draw_swimlanes, timeline_text
from racebench.reports.tables import Row, Table, TableCell, Tone
from racebench.reports.timeline import read_timeline
from racebench.results import DraftInvariant, Hint, HintConfirmation, HintsResult, Results

HINTS_FILE = "hints.md"
TABLE_TITLE = "Hints, ranked, and what forcing them showed"
VERDICT_TONES: dict[str, Tone] = {"confirmed": "bad", "refuted": "good", "unsettled": "warn"}
NO_KEYWORD = "NO_KEYWORD"  # pglast's token kind for what is not a keyword
IDENT = "IDENT"
# Characters that Markdown would read as markup in a hint's prose (`<what was read>` is a tag).
_MARKDOWN_PROSE = str.maketrans({c: f"\\{c}" for c in "\\`*<>[]"})


def _title(entry: HintsResult) -> str:
    return f"{entry.target} x {entry.variant}" if entry.source == "proxy" else entry.target


def _tables(hint: Hint) -> str:
    return f"{', '.join(hint.tables)} ({', '.join(hint.columns)})"


def _must(entry: HintsResult) -> str:
    if entry.expected == "safe":
        return "must show none that stands"
    forced = any(h.confirmation is not None for h in entry.hints)
    return f"must show a confirmed hint in its top {TOP}" if forced else "must show a hint"


def _expectation(entry: HintsResult) -> TableCell:
    verdict = "as expected" if entry.passed else "NOT as expected"
    return TableCell(f"{_must(entry)}; {verdict}", tone="good" if entry.passed else "bad")


def _verdict(found: HintConfirmation | None) -> TableCell:
    if found is None:
        return TableCell("not forced", note="run racebench hints --confirm to force it")
    return TableCell(
        f"{found.verdict} by {found.scenario} ({found.method})",
        note=found.said,
        tone=VERDICT_TONES[found.verdict],
    )


def _source(entry: HintsResult) -> str:
    read = f"{entry.log_lines} log lines" if entry.source == "log" else "each request once, proxied"
    unparsed = f", {entry.unparsed} PostgreSQL could not parse" if entry.unparsed else ""
    return (
        f"{entry.transactions} transaction(s), {entry.statements} statement(s){unparsed} "
        f"({read}, {entry.seconds:.1f} s)"
    )


def hints_table(results: Results) -> Table | None:
    """One row per variant x hint (a variant without one gets a row that says so), or None
    when the run holds no hints."""
    if not results.hints:
        return None
    rows = []
    for entry in results.hints:
        expectation = _expectation(entry)
        if not entry.hints:
            rows.append(
                Row(
                    _title(entry),
                    [
                        TableCell("-"),
                        TableCell("no hint", note=f"from {_source(entry)}"),
                        TableCell("-"),
                        TableCell("-"),
                        TableCell("-"),
                        expectation,
                    ],
                )
            )
        for hint in entry.hints:
            rows.append(
                Row(
                    _title(entry),
                    [
                        TableCell(str(hint.rank)),
                        TableCell(hint.title, note=hint.kind),
                        TableCell(_tables(hint)),
                        TableCell(", ".join(hint.requests)),
                        _verdict(hint.confirmation),
                        expectation,
                    ],
                )
            )
    return Table(
        TABLE_TITLE,
        ["Variant", "Rank", "Hint", "Tables (columns)", "Requests", "Forced", "Expectation"],
        rows,
        notes=[
            "A hint is read off the statements each request type ran once through racebench's "
            "proxy (or off a statement log), parsed by PostgreSQL's own parser; rank 1 is the "
            "most likely to hurt. Forced (--confirm): explored with only the hint's tables as "
            "decision points (a claim made before the work: raced with its fault); confirmed, an "
            "invariant broke; refuted, the whole bound (or every run) held; unsettled, the "
            "budget ran out first, or the harness stalled."
        ],
    )


def hints_checks(results: Results) -> list[Check]:
    """The gate: each variant as expected (a canary's hint found, and confirmed when forced;
    none standing on any other)."""
    return [
        Check(f"hints {_title(e)}", e.passed, f"{_must(e)}: {_found(e)}") for e in results.hints
    ]


def _found(entry: HintsResult) -> str:
    verdicts = [h.confirmation.verdict for h in entry.hints if h.confirmation is not None]
    counts = [f"{verdicts.count(v)} {v}" for v in VERDICT_TONES if v in verdicts]
    return f"{len(entry.hints)} hint(s)" + (f" ({', '.join(counts)})" if counts else "")


# --- the SQL, highlighted ------------------------------------------------------------------


def _names(names: Collection[str]) -> set[str]:
    """The names to mark, as PostgreSQL holds them (harness/hints/accesses.py: an unquoted name
    folded to lower case, a quoted one as written), each also without its schema
    (`public.shop_invoice` marks `shop_invoice`)."""
    given = {n for n in names if n}
    return given | {n.rsplit(".", 1)[-1] for n in given}


def _identifier(text: str) -> str:
    """A token's text as the name it stands for: a quoted identifier unquoted, as written; an
    unquoted one folded to lower case, as PostgreSQL folds it."""
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def highlight_sql(sql: str, names: Collection[str] = ()) -> str:
    """`sql` as HTML: PostgreSQL's keywords in <b>, the identifiers among `names` in <mark>,
    everything escaped. SQL that PostgreSQL's scanner cannot read is shown escaped, plain."""
    try:
        tokens = scan(sql)
    except ParseError:
        return escape(sql)
    marked = _names(names)
    parts: list[str] = []
    at = 0
    for token in tokens:
        start, end = token.start, token.end + 1  # pglast's end is inclusive
        if start < at:
            continue
        parts.append(escape(sql[at:start]))
        text = sql[start:end]
        keyword = token.kind != NO_KEYWORD
        if (token.name == IDENT or keyword) and _identifier(text) in marked:
            parts.append(f"<mark>{escape(text)}</mark>")
        elif keyword:
            parts.append(f"<b>{escape(text)}</b>")
        else:
            parts.append(escape(text))
        at = end
    parts.append(escape(sql[at:]))
    return "".join(parts)


def _sql_block(sql: str, names: Collection[str] = ()) -> str:
    return f'<pre class="sql">{highlight_sql(sql, names)}</pre>'


def _schedule_html(entry: HintsResult, hint: Hint, found: HintConfirmation) -> str:
    """A confirmed hint's failing schedule: swimlanes (when its timeline was kept) and the
    command that replays it."""
    parts = []
    replay = f"racebench explore --replay {found.schedule_file}" if found.schedule_file else ""
    if found.timeline:
        title = f"hint {hint.rank} of {_title(entry)}: {found.scenario}, {hint.kind}"
        lanes = read_timeline(found.timeline, title)
        parts.append(
            image_html(
                Image(
                    title,
                    draw_swimlanes(lanes),
                    caption=f"replay: {replay}" if replay else "",
                    missing="no event could be placed on a lane",
                    text=timeline_text(lanes),
                )
            )
        )
    elif replay:
        parts.append(f'<p class="notes">replay: <code>{escape(replay)}</code></p>')
    return "".join(parts)


def _hint_html(entry: HintsResult, hint: Hint) -> str:
    names = [*hint.tables, *hint.columns]
    parts = [
        '<div class="hint">',
        f"<h4>{hint.rank}. {escape(hint.title)}: {escape(_tables(hint))}</h4>",
        f'<p class="notes">{escape(hint.kind)}, in {escape(", ".join(hint.requests))}</p>',
        f"<p><b>why</b>: {escape(hint.why)}</p>",
        f"<p><b>fix</b>: {escape(hint.fix)}</p>",
    ]
    for evidence in hint.evidence:
        parts.append(
            f'<p class="role"><b>{escape(evidence.role)}</b> '
            f'<span class="note">({escape(evidence.request)}, transaction '
            f"{evidence.transaction})</span></p>"
        )
        parts.append(_sql_block(evidence.sql, names))
    found = hint.confirmation
    if found is not None:
        tone = VERDICT_TONES[found.verdict]
        parts.append(
            f'<p><span class="{tone}">{escape(found.verdict)}</span> by '
            f"{escape(found.scenario)} ({escape(found.method)}): {escape(found.said)}</p>"
        )
        if found.verdict == "confirmed":
            parts.append(_schedule_html(entry, hint, found))
    parts.append("</div>")
    return "".join(parts)


def _invariant_html(invariant: DraftInvariant) -> str:
    return (
        f"<p><b>{escape(invariant.code)}</b>: {escape(invariant.name)} "
        f'<span class="note">why: {escape(invariant.why)}</span></p>' + _sql_block(invariant.sql)
    )


def _drafts_html(entry: HintsResult) -> str:
    if not entry.barrier_tables and not entry.invariants:
        return ""
    parts = [f"<h4>Drafts for the target file ({escape(_title(entry))})</h4>"]
    if entry.barrier_tables:
        parts.append(
            f"<p><code>barrier_tables = {escape(repr(entry.barrier_tables))}</code> "
            '<span class="note">(the tables the captures write after their first read)</span>'
            "</p>"
        )
    parts += [_invariant_html(inv) for inv in entry.invariants]
    return "".join(parts)


def hints_sql_html(results: Results) -> str:
    """Per variant, per hint: its title, why, fix and each statement that proves it,
    highlighted; a confirmed hint's failing schedule; the draft barrier tables and invariants.
    "" when the run holds no hints."""
    parts = []
    for entry in results.hints:
        parts.append(
            f"<h3>{escape(_title(entry))}: {len(entry.hints)} hint(s) from "
            f"{escape(_source(entry))}</h3>"
        )
        if not entry.hints:
            parts.append('<p class="notes">no hint: no unguarded read-then-write was seen</p>')
        parts += [_hint_html(entry, hint) for hint in entry.hints]
        parts.append(_drafts_html(entry))
    return "\n".join(p for p in parts if p)


# --- hints.md ------------------------------------------------------------------------------


def _prose(text: str) -> str:
    return text.translate(_MARKDOWN_PROSE)


def _fenced(sql: str) -> list[str]:
    """`sql` in a ```sql block, its fence longer than any run of backticks inside."""
    longest = run = 0
    for char in sql:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}sql", sql.strip("\n"), fence, ""]


def _hint_markdown(hint: Hint) -> list[str]:
    lines = [
        f"### {hint.rank}. {_prose(hint.title)}: {_prose(_tables(hint))}",
        "",
        f"{hint.kind}, in {_prose(', '.join(hint.requests))}",
        "",
        f"- why: {_prose(hint.why)}",
        f"- fix: {_prose(hint.fix)}",
    ]
    found = hint.confirmation
    if found is not None:
        lines.append(
            f"- {found.verdict} by {found.scenario} ({found.method}): {_prose(found.said)}"
        )
        if found.verdict == "confirmed" and found.schedule_file:
            lines.append(f"- replay: `racebench explore --replay {found.schedule_file}`")
    lines.append("")
    for evidence in hint.evidence:
        lines += [
            f"{evidence.role} ({_prose(evidence.request)}, transaction {evidence.transaction}):",
            "",
            *_fenced(evidence.sql),
        ]
    return lines


def _drafts_markdown(entry: HintsResult) -> list[str]:
    if not entry.barrier_tables and not entry.invariants:
        return []
    lines = [f"### Drafts for the target file ({_title(entry)})", ""]
    if entry.barrier_tables:
        lines += [
            f"`barrier_tables = {entry.barrier_tables!r}` (the tables the captures write "
            "after their first read)",
            "",
        ]
    for inv in entry.invariants:
        lines += [f"{inv.code}: {_prose(inv.name)}; why: {_prose(inv.why)}", "", *_fenced(inv.sql)]
    return lines


def hints_markdown(results: Results) -> str:
    """hints.md: the table, then each variant's hints with their statements in ```sql blocks,
    and the drafts. "" when the run holds no hints."""
    table = hints_table(results)
    if table is None:
        return ""
    lines = [document(f"racebench: hints ({results.run_id})", [table], HINTS_HEADING)]
    for entry in results.hints:
        lines += ["", f"## {_title(entry)}: {len(entry.hints)} hint(s) from {_source(entry)}", ""]
        for hint in entry.hints:
            lines += _hint_markdown(hint)
        lines += _drafts_markdown(entry)
    return "\n".join(lines).rstrip("\n") + "\n"


__all__ = [
    "HINTS_FILE",
    "highlight_sql",
    "hints_checks",
    "hints_markdown",
    "hints_sql_html",
    "hints_table",
]
