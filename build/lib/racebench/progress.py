"""The one progress hook of long work: race cells and bench rounds report through it.

Whoever runs the work (harness/matrix.py, loadtests' bench) calls these, in this order for each
unit of work (a race cell, a bench round): `started`, any number of `phase` and `advanced`,
then `finished` with the unit's result. Whoever shows progress (a rich bar, plain lines in a
log, a test's recorder) implements them. A runner given no hook reports to nobody.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

Result_contra = TypeVar("Result_contra", contravariant=True)


class Progress(Protocol[Result_contra]):
    def started(self, label: str, index: int, total: int) -> None:
        """Unit `index` (1-based) of `total` begins; `label` names it for a person."""

    def phase(self, name: str) -> None:
        """The current unit moved to a named phase ("starting the service", "seeding")."""

    def advanced(self, done: float, total: float) -> None:
        """The current unit is `done` of `total` through (runs of a cell, seconds of load)."""

    def finished(self, result: Result_contra) -> None:
        """The current unit ended with `result`."""
