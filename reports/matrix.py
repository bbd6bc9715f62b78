"""The safety matrix: scenario x strategy, each cell safe / caught / unexpected, computed from
the race results of one run (never kept by hand)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from racebench.reports.formatting import counts
from racebench.reports.summary import strategy_order
from racebench.results import BenchResult, Finding, RaceResult


class Outcome(StrEnum):
    SAFE = "safe"  # expected safe, every invariant held
    CAUGHT = "caught"  # expected to race, and the harness caught it
    UNEXPECTED = "unexpected"  # anything else: a safe strategy broke, a race went unseen, an error
    NOT_RUN = "not run"


@dataclass(frozen=True)
class MatrixCell:
    outcome: Outcome
    detail: str = ""  # the evidence: violation counts, "not caught", the error
    runs: int = 0


@dataclass(frozen=True)
class Matrix:
    rows: list[str]  # scenario; "scenario (http)" for the http row of a scenario run in both
    strategies: list[str]
    cells: dict[tuple[str, str], MatrixCell]
    invariants: str = ""  # the broken invariants' codes and names, as their checks gave them

    def cell(self, row: str, strategy: str) -> MatrixCell:
        return self.cells.get((row, strategy), MatrixCell(Outcome.NOT_RUN))

    def tally(self) -> Counter[Outcome]:
        return Counter(c.outcome for c in self.cells.values())

    @property
    def ok(self) -> bool:
        return all(c.outcome is not Outcome.UNEXPECTED for c in self.cells.values())


def _cell(results: list[RaceResult]) -> MatrixCell:
    """One cell from every result that fell in it (repeats, or one result per run)."""
    violations: Counter[str] = Counter()
    for r in results:
        violations.update(r.violations)
    runs = sum(r.runs for r in results)
    evidence = counts(violations)
    failed = [r for r in results if not r.passed]
    if not failed:
        caught = results[0].finding is Finding.CAUGHT
        return MatrixCell(Outcome.CAUGHT if caught else Outcome.SAFE, evidence, runs)
    errors = [r for r in failed if r.finding is Finding.ERROR]
    if errors:
        detail = "error: " + (errors[0].error or "see the race log")
    elif failed[0].finding is Finding.MISSED:
        detail = "race not caught"
    else:
        detail = evidence or "violations"
    return MatrixCell(Outcome.UNEXPECTED, detail, runs)


def build_matrix(race: list[RaceResult]) -> Matrix:
    modes: dict[str, set[str]] = {}
    for r in race:
        modes.setdefault(r.scenario, set()).add(r.mode)

    def row_of(r: RaceResult) -> str:
        in_both = len(modes[r.scenario]) > 1 and r.mode != "in_process"
        return f"{r.scenario} ({r.mode})" if in_both else r.scenario

    grouped: dict[tuple[str, str], list[RaceResult]] = {}
    for r in race:
        grouped.setdefault((row_of(r), r.strategy), []).append(r)
    scenarios = list(dict.fromkeys(r.scenario for r in race))
    ordered = sorted(race, key=lambda r: (scenarios.index(r.scenario), r.mode != "in_process"))
    rows = list(dict.fromkeys(row_of(r) for r in ordered))
    return Matrix(
        rows=rows,
        strategies=strategy_order(r.strategy for r in race),
        cells={key: _cell(results) for key, results in grouped.items()},
        invariants=invariant_names(race),
    )


def invariant_names(entries: Iterable[RaceResult | BenchResult]) -> str:
    """`DUPLICATE_RECEIPT: payment captured twice (two receipts); ...`: every invariant the
    entries found broken, by its own name ("" when none was, or none has a name of its own)."""
    names: dict[str, str] = {}
    for entry in entries:
        for code, invariant in entry.invariants.items():
            names.setdefault(code, invariant.name)
    return "; ".join(f"{code}: {name}" for code, name in names.items() if name != code)
