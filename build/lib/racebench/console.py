"""The consoles racebench prints on. In a terminal, its own width; in a log (CI, a pipe, a
file), rich would fall back to 80 columns and wrap every progress line and table, so a log
gets one fixed width that the widest table (the strategy matrix) fits in."""

from __future__ import annotations

from rich.console import Console

LOG_WIDTH = 160


def console(*, stderr: bool = False, highlight: bool = True) -> Console:
    """stdout (or stderr): the terminal's width, or LOG_WIDTH when it is not a terminal."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else LOG_WIDTH
    return Console(stderr=stderr, width=width, highlight=highlight)
