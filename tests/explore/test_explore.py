"""racebench explore end to end: real services behind the real proxy, real PostgreSQL.

The shop's read skew (reconcile_skew) is reached only by a schedule that puts one capture's
COMMIT between two reads of the other; the barrier never does (tests/targets has it held under
race). explore finds it, shrinks it, saves it, and the saved schedule replays it; the fix
(reconciled) completes the bounded search. On the reference service, `none` and `app_lock` across
two workers are found and `for_update` completes. Interrupted, nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from racebench.explore import Search, run_explore, run_replay
from racebench.harness.database import parse_url
from racebench.harness.explore.behind import behind_proxy
from racebench.harness.explore.explorer import (
    Explorer,
    ScheduleRun,
    SearchResult,
    _alternatives,
    bounded_search,
)
from racebench.harness.explore.scheduler import PCT, Decision, Prefix, non_preemptive
from racebench.harness.target.file import load
from racebench.pytest_plugin import ExploreRunner
from racebench.results import Results
from racebench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "target.toml"
WAIT_S = 60.0


@pytest.fixture(autouse=True)
def _shop_on_racebench_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's own database variable would bypass the proxy: racebench makes it one."""
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)


def _results(folder: Path) -> Results:
    return Results.read(folder)


async def test_the_read_skew_is_found_shrunk_saved_and_replayed(
    tmp_path: Path, database_url: str
) -> None:
    code = await asyncio.to_thread(
        run_explore,
        target=str(SHOP),
        strategies="reconcile_skew",
        scenarios="split_invoice",
        canary=True,
        database_url=database_url,
        out=tmp_path,
    )
    assert code == 0
    [entry] = _results(tmp_path).explore
    assert entry.passed and entry.expected == "race" and entry.violations == 1
    assert entry.schedules <= 200, entry.guarantee
    failure = entry.failure
    assert failure is not None and failure.preemptions <= 2
    assert failure.violations == {"FALSE_DISPUTE": 1}
    # The drawing is the actual SQL, in the order it ran: the second capture's COMMIT lies
    # between the first one's two reads.
    sql = [e.what for e in failure.timeline if getattr(e, "actor", "") == "first"]
    reads = [i for i, what in enumerate(sql) if what.startswith("SELECT")]
    assert any("shop_invoice.paid_paise" in sql[i] for i in reads)
    saved = Path(failure.schedule_file)
    text = await asyncio.to_thread(saved.read_text)
    assert json.loads(text)["choices"] == failure.choices
    assert await asyncio.to_thread(run_replay, saved, repeat=3, database_url=database_url) == 0


async def test_the_fix_completes_the_bounded_search(tmp_path: Path, database_url: str) -> None:
    code = await asyncio.to_thread(
        run_explore,
        target=str(SHOP),
        strategies="reconciled",
        scenarios="split_invoice",
        search=Search(bound=1),
        database_url=database_url,
        out=tmp_path,
    )
    [entry] = _results(tmp_path).explore
    assert code == 0, entry.guarantee
    assert entry.complete and entry.violations == 0 and entry.artifacts == 0
    assert entry.guarantee.startswith(
        f"all {entry.schedules} schedules with at most 1 preemptions explored: 0 violations"
    )


async def test_the_reference_service(tmp_path: Path, database_url: str) -> None:
    """none and app_lock (across the reference target's two workers) are found; for_update
    completes the bounded search."""
    code = await asyncio.to_thread(
        run_explore,
        strategies="none,app_lock,for_update",
        database_url=database_url,
        out=tmp_path,
    )
    by_variant = {e.variant: e for e in _results(tmp_path).explore}
    assert code == 0, [e.guarantee for e in by_variant.values()]
    assert by_variant["none"].violations == 1 and by_variant["app_lock"].violations == 1
    held = by_variant["for_update"]
    assert held.complete and held.violations == 0 and held.schedules > 1


async def test_an_interrupted_schedule_leaves_no_backend_and_no_lock(database_url: str) -> None:
    """Cancelled while a statement is held at the proxy: the proxy, the service and every
    connection stop; nothing of the service is left in pg_stat_activity or pg_locks."""
    spec = load(SHOP)
    script = SCENARIOS["simultaneous"].on_target(spec)
    assert not isinstance(script, str)
    names: list[str] = []
    decided = asyncio.Event()

    class CancellingPolicy:
        """At the first choice between two held statements: one is released, the other stays
        held, and the search is cancelled there (at its next await)."""

        def choose(self, index: int, runnable: Sequence[str], previous: str | None) -> str:
            if len(runnable) > 1 and not decided.is_set():
                decided.set()
                current = asyncio.current_task()
                assert current is not None
                current.cancel()
            return runnable[0]

    async def explore_until_cancelled() -> None:
        async with behind_proxy(spec, "fixed", database_url=database_url) as behind:
            names.append(str(parse_url(behind.session.database.url).database))
            explorer = Explorer(behind.session, behind.launcher, script)
            await explorer.run(CancellingPolicy())

    task = asyncio.create_task(explore_until_cancelled())
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 2 * WAIT_S)
    assert decided.is_set() and task.cancelled()
    await _nothing_left(database_url, names[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_the_command_and_leaves_nothing(
    tmp_path: Path, database_url: str, sig: signal.Signals
) -> None:
    """SIGTERM (a CI cancel, `timeout`) and Ctrl-C: exit 130; no backend, lock or database of
    the run is left."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "racebench.cli", "explore", "--target", str(SHOP),
        "--strategy", "fixed", "--scenario", "invoice_fan_in", "--max-schedules", "100000",
        "--database-url", database_url, "--out", str(tmp_path),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert child.stderr is not None
        line = (await asyncio.wait_for(child.stderr.readline(), WAIT_S)).decode()
        assert "behind racebench's proxy" in line, line
        database = line.split("its database ", 1)[1].split()[0]
        child.send_signal(sig)
        code = await asyncio.wait_for(child.wait(), WAIT_S)
        assert code == 130
        await _nothing_left(database_url, database)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _nothing_left(database_url: str, database: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        backends = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        )
        locks = await conn.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = $1",
            database,
        )
        exists = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", database
        )
    finally:
        await conn.close()
    assert (backends, locks, exists) == (0, 0, 0)


# -- the search on its own -------------------------------------------------------------------


def _run(decisions: list[Decision], verdict_violation: bool = False) -> ScheduleRun:
    from racebench.harness.cells import RunOutcome
    from racebench.harness.invariants import CheckResult

    check = CheckResult(not verdict_violation, ["X"] if verdict_violation else [])
    return ScheduleRun(
        number=1,
        choices=[d.chosen for d in decisions],
        decisions=decisions,
        outcome=RunOutcome(check, [], []),
        traces=[],
        diverged=0,
        seconds=0.0,
    )


def test_a_preemption_is_a_switch_away_from_a_runnable_actor() -> None:
    assert Decision(0, ("a", "b"), "a", "b", "").preemption
    assert not Decision(0, ("b",), "a", "b", "").preemption  # a was not runnable: free
    assert not Decision(0, ("a", "b"), None, "b", "").preemption  # the first choice is free
    assert non_preemptive(["a", "b"], "b") == "b" and non_preemptive(["a", "b"], None) == "a"


def test_the_alternatives_stay_within_the_bound() -> None:
    ab = ("a", "b")
    run = _run([Decision(0, ab, None, "a", ""), Decision(1, ab, "a", "a", ""),
                Decision(2, ab, "a", "a", "")])  # fmt: skip
    assert list(_alternatives(run, 0, 1)) == [(0, ["b"]), (1, ["a", "b"]), (1, ["a", "a", "b"])]
    assert list(_alternatives(run, 0, 0)) == [(0, ["b"])]


async def test_the_bounded_search_runs_every_schedule_once_fewest_preemptions_first() -> None:
    """Two actors of two steps each, in a model of the scheduler: every interleaving with at
    most one preemption, each once, those with none first."""
    seen: list[tuple[str, ...]] = []

    async def run_one(policy: object) -> ScheduleRun:
        assert isinstance(policy, Prefix)
        left = {"a": 2, "b": 2}
        decisions: list[Decision] = []
        previous = None
        while any(left.values()):
            runnable = tuple(a for a in "ab" if left[a])
            chosen = policy.choose(len(decisions), runnable, previous)
            decisions.append(Decision(len(decisions), runnable, previous, chosen, ""))
            left[chosen] -= 1
            previous = chosen
        seen.append(tuple(d.chosen for d in decisions))
        return _run(decisions)

    result = await bounded_search(run_one, bound=1)
    assert result.complete and result.schedules == len(set(seen)) == 4
    assert seen[:2] == [("a", "a", "b", "b"), ("b", "b", "a", "a")]  # no preemption
    assert set(seen[2:]) == {("a", "b", "b", "a"), ("b", "a", "a", "b")}  # one each
    # a b a b and b a b a switch away from a runnable actor twice: past the bound.
    everything = await bounded_search(run_one, bound=2)
    assert everything.schedules == 6


def test_pct_is_seeded_and_states_its_bound() -> None:
    first = [PCT(["a", "b"], 10, 2, seed).choose(0, ["a", "b"], None) for seed in range(20)]
    again = [PCT(["a", "b"], 10, 2, seed).choose(0, ["a", "b"], None) for seed in range(20)]
    assert first == again and set(first) == {"a", "b"}
    result = SearchResult("pct", 2, schedules=100, actors=2, steps=10, depth=2)
    assert result.miss_probability() == pytest.approx((1 - 1 / 20) ** 100)
    assert result.guarantee().startswith("P(a depth-2 bug was missed) <= 0.00592 after 100")


async def test_the_pytest_fixture(racebench_explore: ExploreRunner) -> None:
    """README's example: the fix holds in every schedule within the bound; the bug is found,
    and its drawing carries the evidence."""
    found = await racebench_explore(str(SHOP), "split_invoice", variant="reconciled", preemptions=1)
    assert found.search.complete and found.search.violations == 0
    bug = await racebench_explore(
        str(SHOP), "split_invoice", variant="reconcile_skew", expect_bug=True
    )
    assert bug.failure is not None and "FALSE_DISPUTE" in bug.drawing("split_invoice")
