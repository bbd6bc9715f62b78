"""Real races, every timeline in a possible order (issue 11: the timelines tell the truth).

Each run of interleaved, simultaneous and hundred_way, under every strategy, in-process and
over HTTP, must draw: a holder's COMMIT or ROLLBACK before its waiter has the lock (and one of
them drawn: a wait never ends with no visible cause), each COMMIT before its actor's answer,
nothing of an actor before it sent its request, no step of an actor inside its own lock wait,
and no synthetic "COMMIT was not reported" after a reported COMMIT (timeline_rules has each
rule broken on purpose). The suite plays each cell once;
RACEBENCH_ORDERING_RUNS=5 plays each 5 times (3 scenarios x 7 strategies x 2 modes x 5 = 210).
"""

from __future__ import annotations

import os

import pytest

from racebench.harness.cells import CellRuns
from racebench.harness.matrix import plan, run_cells
from racebench.harness.timeline import ordering_errors, render
from racebench.results import LockWait, TimelineEvent
from racebench.scenarios import SCENARIOS

SCENARIOS_ORDERED = "interleaved,simultaneous,hundred_way"
RUNS = int(os.environ.get("RACEBENCH_ORDERING_RUNS", "1"))


@pytest.mark.parametrize("mode", ["in_process", "http"])
async def test_every_timeline_is_in_a_possible_order(database_url: str, mode: str) -> None:
    cells = plan(SCENARIOS, "all", SCENARIOS_ORDERED, mode)
    cell_runs = await run_cells(cells, database_url, repeat=RUNS, seed=RUNS)
    runs = 0
    for c in cell_runs:
        assert len(c.outcomes) == RUNS, c.cell.title
        for i, outcome in enumerate(c.outcomes):
            runs += 1
            assert outcome.errors == [], (c.cell.title, i, outcome.errors)
            errors = ordering_errors(outcome.timeline)
            assert errors == [], (
                f"{c.cell.title} run {i}:\n"
                + "\n".join(errors)
                + "\n"
                + (render(outcome.timeline, c.cell.title))
            )
        if c.cell.scenario.name == "interleaved":
            _tells_the_whole_story(c)
    print(f"{runs} runs of {len(cell_runs)} cells ({mode}): every timeline in a possible order")


def _tells_the_whole_story(c: CellRuns) -> None:
    """interleaved: the write-up's T0..T7 all appear, every COMMIT is there, and what the
    webhook did after a wait is drawn (its UPDATE under none, its skip under for_update)."""
    for outcome in c.outcomes:
        events = [e for e in outcome.timeline if isinstance(e, TimelineEvent)]
        labels = {e.label for e in events}
        assert {f"T{i}" for i in range(8)} <= labels, (c.cell.title, sorted(labels))
        commits = {e.actor for e in events if e.what == "COMMIT"}
        assert commits == {"client", "webhook"}, c.cell.title
        waits = [w for w in outcome.timeline if isinstance(w, LockWait) and w.actor == "webhook"]
        webhook = [e for e in events if e.actor == "webhook"]
        if c.cell.strategy == "none":
            assert waits and waits[0].holders == ["client"], c.cell.title
            after = [e.what for e in webhook if e.t_ms >= waits[0].end_ms]
            assert after[0].startswith("UPDATE payment"), after
            blocked = next(e.what for e in webhook if e.kind == "blocked")
            assert "UPDATE payments waits for client's row lock" in blocked
        if c.cell.strategy == "for_update":
            assert waits and waits[0].holders == ["client"], c.cell.title
            after = [e.what for e in webhook if e.t_ms >= waits[0].end_ms]
            assert "already captured, skipped" in after[0], after
