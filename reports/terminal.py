"""Tables on the terminal, with rich."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from racebench.console import console
from racebench.reports.gate import GateResult
from racebench.reports.tables import Table, TableCell

# Width when stdout is a file or a pipe (CI logs): wide enough for the tables, not unbounded.
# In the compact matrix a cell's note is cut here: seven strategy columns share a 140-column
# log, and an error message in every cell would make each row a dozen lines tall. The race
# gate's line below the table, matrix.md and report.html keep the whole text.
COMPACT_NOTE_CHARS = 24
STYLES = {"good": "green", "bad": "bold red", "warn": "yellow", "neutral": ""}


def terminal_console() -> Console:
    """stdout; a fixed, wide layout when it is not a terminal."""
    return console()


def _cell(cell: TableCell, compact: bool) -> Text:
    text = Text(cell.text, style=STYLES[cell.tone])
    if cell.delta:
        text.append(f" ({cell.delta})", style="cyan")
    if cell.note and not (compact and cell.tone in ("good", "neutral")):
        note = cell.note
        if compact and len(note) > COMPACT_NOTE_CHARS:
            note = note[: COMPACT_NOTE_CHARS - 1] + "…"
        text.append(f"\n{note}", style="dim")
    return text


def print_table(console: Console, table: Table, compact: bool = False) -> None:
    """`compact`: show a cell's note only when something is wrong (for the wide matrix)."""
    out = RichTable(title=table.title, box=box.SIMPLE_HEAVY, title_style="bold", show_lines=True)
    for i, header in enumerate(table.headers):
        out.add_column(header, style="bold" if i == 0 else None, overflow="fold")
    for row in table.rows:
        out.add_row(row.label, *(_cell(c, compact) for c in row.cells))
    console.print(out)
    for note in table.notes:
        console.print(f"  {note}", style="dim", highlight=False)
    console.print()


def print_gate(console: Console, gate: GateResult) -> None:
    for c in gate.checks:
        mark = "[green]ok  [/]" if c.passed else "[bold red]FAIL[/]"
        console.print(f"  {mark} {c.name}: {c.detail}", highlight=False)
    verdict = "[green]gate passed[/]" if gate.passed else "[bold red]gate FAILED[/]"
    console.print(verdict)
