"""Tables as Markdown (table.md, matrix.md, comparison.md)."""

from __future__ import annotations

from racebench.reports.gate import GateResult
from racebench.reports.tables import Table


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table, level: int = 2) -> str:
    lines = [f"{'#' * level} {table.title}", ""]
    lines.append("| " + " | ".join(map(_escape, table.headers)) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for row in table.rows:
        cells = [_escape(row.label), *(_escape(c.inline()) for c in row.cells)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"_{_escape(note)}_  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def document(title: str, tables: list[Table], preamble: str = "") -> str:
    parts = [f"# {title}\n"]
    if preamble:
        parts.append(preamble.rstrip() + "\n")
    parts += [table_markdown(t) for t in tables]
    return "\n".join(parts)


def gate_markdown(gate: GateResult) -> str:
    verdict = "PASSED" if gate.passed else "FAILED"
    lines = [f"## Gate: {verdict}", "", "| check | result | detail |", "|---|---|---|"]
    for c in gate.checks:
        lines.append(
            f"| {_escape(c.name)} | {'ok' if c.passed else 'FAIL'} | {_escape(c.detail)} |"
        )
    return "\n".join(lines) + "\n"
