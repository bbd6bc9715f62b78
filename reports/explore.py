"""racebench explore's searches in the report: one row per scenario x variant with the guarantee
it achieved, a check per search for the gate, and each failing schedule drawn as swimlanes of
the SQL each request ran."""

from __future__ import annotations

from racebench.reports.gate import Check
from racebench.reports.page import Image
from racebench.reports.swimlanes import draw_swimlanes, timeline_text
from racebench.reports.tables import Row, Table, TableCell
from racebench.reports.timeline import read_timeline
from racebench.results import ExploreResult, Results

EXPLORE_FILE = "explore.md"
TITLE = "Explore: every interleaving within the preemption bound, at the PostgreSQL wire"


def _title(entry: ExploreResult) -> str:
    return f"{entry.scenario} x {entry.variant}"


def explore_table(results: Results) -> Table | None:
    """The searches of the run, or None when it explored nothing."""
    if not results.explore:
        return None
    rows = []
    for entry in results.explore:
        must = "be caught" if entry.expected == "race" else "hold"
        verdict = "as expected" if entry.passed else "NOT as expected"
        found = f"{entry.violations} violating schedule(s)" if entry.violations else "no violation"
        failure = entry.failure
        note = (
            f"schedule {failure.schedule_id}: {failure.preemptions} preemption(s); {failure.result}"
            if failure is not None
            else ""
        )
        rows.append(
            Row(
                _title(entry),
                [
                    TableCell(f"must {must}; {verdict}", tone="good" if entry.passed else "bad"),
                    TableCell(
                        f"{entry.schedules} ({entry.search})",
                        note=f"{entry.seconds:.1f} s, "
                        f"{1000 * entry.seconds / max(entry.schedules, 1):.0f} ms a schedule",
                    ),
                    TableCell(found, note=note, tone="bad" if entry.violations else "neutral"),
                    TableCell(entry.guarantee),
                ],
            )
        )
    return Table(
        TITLE,
        ["Scenario x variant", "Expectation", "Schedules", "Found", "Guarantee"],
        rows,
        notes=[
            "A schedule is one order of the racing requests' statements, released one at a "
            "time by racebench's proxy; a preemption switches away from a request that could "
            "go on. A harness artifact (a stall the scheduler caused) is neither bug nor safe."
        ],
    )


def explore_checks(results: Results) -> list[Check]:
    """The gate: each search as expected (a canary caught, every other variant held)."""
    return [Check(f"explore {_title(e)}", e.passed, e.guarantee) for e in results.explore]


def explore_images(results: Results) -> list[Image]:
    """Each failing schedule as swimlanes, with its text form."""
    images = []
    for entry in results.explore:
        failure = entry.failure
        if failure is None:
            continue
        title = (
            f"explore {_title(entry)}: schedule {failure.schedule_id}, "
            f"{failure.preemptions} preemption(s)"
        )
        lanes = read_timeline(failure.timeline, title)
        images.append(
            Image(
                title,
                draw_swimlanes(lanes),
                caption=f"replay: racebench explore --replay {failure.schedule_file}",
                text=timeline_text(lanes),
            )
        )
    return images


__all__ = ["EXPLORE_FILE", "explore_checks", "explore_images", "explore_table"]
