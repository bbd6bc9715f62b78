"""How numbers read in every table: one formatter per unit, shared by all renderers."""

from __future__ import annotations

from collections.abc import Mapping

# Below these magnitudes a number gets more decimals, so small values keep three figures.
ONE_DECIMAL_BELOW = 100.0
TWO_DECIMALS_BELOW = 10.0
MISSING = "—"


def _decimals(value: float) -> int:
    magnitude = abs(value)
    if magnitude < TWO_DECIMALS_BELOW:
        return 2
    if magnitude < ONE_DECIMAL_BELOW:
        return 1
    return 0


def number(value: float) -> str:
    """About three significant figures: 0.42, 4.20, 42.0, 420, 4,200."""
    return f"{value:,.{_decimals(value)}f}"


def ms(value: float) -> str:
    return f"{number(value)} ms"


def rps(value: float) -> str:
    return f"{number(value)} req/s"


def signed(value: float, precision_of: float | None = None) -> str:
    """`value` with its sign, in the precision `precision_of` would get (default: its own)."""
    decimals = _decimals(value if precision_of is None else precision_of)
    return f"{value:+,.{decimals}f}"


def delta_ms(value: float, before: float) -> str:
    """In Before's precision (`+10 ms` on 150 ms), finer when that would round a change to 0."""
    change = value - before
    text = signed(change, before)
    if change != 0 and float(text.replace(",", "")) == 0:
        text = signed(change)
    return f"{text} ms"


def percent_change(value: float, before: float) -> float | None:
    """Change from `before` to `value` in percent; None when `before` is zero."""
    if before == 0:
        return None
    return (value - before) / before * 100.0


def delta_percent(value: float, before: float) -> str:
    change = percent_change(value, before)
    return MISSING if change is None else f"{change:+.1f}%"


def span(low: float, high: float) -> str:
    """A range across rounds: `158..163`."""
    return f"{number(low)}..{number(high)}"


def plural(n: int, word: str) -> str:
    """`1 scenario run`, `300 scenario runs`, `2,940 requests`."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def counts(by_code: Mapping[str, int]) -> str:
    """`DOUBLE_CAPTURE 3, DUPLICATE_RECEIPT 3`, largest first; empty when nothing counted."""
    items = sorted(((c, n) for c, n in by_code.items() if n), key=lambda cn: (-cn[1], cn[0]))
    return ", ".join(f"{code} {n:,}" for code, n in items)
