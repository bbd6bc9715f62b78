"""Shared plumbing for the report's figures: the Agg backend, the palette, PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: figures only ever become PNG bytes

from matplotlib.figure import Figure

# Sharp on a laptop screen, still small enough to embed a dozen figures in one page.
DPI = 110
PALETTE = {
    "none": "#c0392b",
    "for_update": "#2471a3",
    "conditional_update": "#17a589",
    "optimistic": "#7d3c98",
    "advisory": "#b9770e",
    "serializable": "#2e4053",
    "app_lock": "#a04000",
}
FALLBACK_COLOURS = ("#5d6d7e", "#196f3d", "#873600", "#1b4f72", "#6c3483")
BAD = "#c0392b"
GOOD = "#1e8449"
MUTED = "#7f8c8d"


def colour(strategy: str, index: int = 0) -> str:
    return PALETTE.get(strategy, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """`constrained`: let matplotlib fit axes and labels (off for hand-placed drawings)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
