"""racebench explore: every interleaving of a scenario's racing transactions that matters, within
a preemption bound, on a target whose database connections go through racebench's proxy.

One schedule is one run of the scenario's target script, its launch driven by the scheduler
(harness/explore/scheduler.py) under a policy: `Prefix(choices)` replays choices and then runs
without preempting. The bounded search explores every schedule with at most `bound` preemptions,
fewest preemptions first (CHESS's context bounding, Musuvathi and Qadeer, PLDI 2007): it starts
from the schedule with no choice made and, for each decision of each schedule run, queues the
other runnable actors there, while the preemptions stay within the bound. When the space is
larger than `max_schedules`, PCT takes over (seeded, depth d), and the guarantee it states is
PCT's: a depth-d bug is missed with probability at most (1 - 1/(n k^(d-1)))^R after R schedules
of n actors and k decisions.

A failing schedule is shrunk (each preemption undone while the violation stays), saved as JSON
with its id, and replays with `racebench explore --replay FILE`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from racebench.harness.cells import RunOutcome, verdict_line
from racebench.harness.explore.behind import Behind, CannotExplore, behind_proxy
from racebench.harness.explore.scheduler import (
    PCT,
    Decision,
    Focus,
    LaunchTrace,
    Policy,
    Prefix,
    SchedulerLauncher,
    preemptions,
)
from racebench.harness.hints.accesses import gates
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.race import TargetScript, run_target_once
from racebench.harness.target.session import Session
from racebench.harness.timeline import render
from racebench.results import HARNESS_ACTOR, EventKind, TimelineEntry, TimelineEvent

DEFAULT_BOUND = 2
DEFAULT_MAX_SCHEDULES = 400
DEFAULT_PCT_DEPTH = 2
DEFAULT_PCT_SCHEDULES = 200
SCHEDULE_FORMAT = 1
# A statement's text in a timeline: the gist is early.
SQL_PREVIEW_CHARS = 110

Verdict = Literal["held", "violation", "error", "artifact"]


@dataclass
class ScheduleRun:
    """One schedule: the choices it made, what they did, and the verdict."""

    number: int
    choices: list[str]
    decisions: list[Decision]
    outcome: RunOutcome
    traces: list[LaunchTrace]
    diverged: int
    seconds: float

    @property
    def preemptions(self) -> int:
        return preemptions(self.decisions)

    @property
    def artifacts(self) -> list[str]:
        return [a for trace in self.traces for a in trace.artifacts]

    @property
    def verdict(self) -> Verdict:
        if self.artifacts:
            return "artifact"
        if not self.outcome.check.valid:
            return "violation"
        if self.outcome.errors:
            return "error"
        return "held"

    @property
    def id(self) -> str:
        return schedule_id(self.choices)


def schedule_id(choices: Sequence[str]) -> str:
    return hashlib.sha1("\x1f".join(choices).encode()).hexdigest()[:12]


RunOne = Callable[[Policy], Awaitable[ScheduleRun]]


class Explorer:
    """Runs schedules of one scenario on one target session (its service behind the proxy)."""

    def __init__(self, session: Session, launcher: SchedulerLauncher, script: TargetScript):
        self.session = session
        self.launcher = launcher
        self.script = script
        self.runs = 0
        session.launcher = launcher

    async def run(self, policy: Policy) -> ScheduleRun:
        self.launcher.reset(policy)
        started = time.perf_counter()
        outcome = await run_target_once(self.script, self.session)
        self.runs += 1
        decisions = self.launcher.decisions()
        return ScheduleRun(
            number=self.runs,
            choices=[d.chosen for d in decisions],
            decisions=decisions,
            outcome=outcome,
            traces=list(self.launcher.traces),
            diverged=policy.diverged if isinstance(policy, Prefix) else 0,
            seconds=time.perf_counter() - started,
        )


@dataclass
class SearchResult:
    """What a search explored, and what it found."""

    mode: Literal["exhaustive", "pct"]
    bound: int
    schedules: int = 0
    complete: bool = False  # every schedule within the bound was run
    held: int = 0
    violations: int = 0
    errors: int = 0
    artifacts: int = 0
    diverged: int = 0
    first_failure: ScheduleRun | None = None
    artifact_examples: list[str] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    depth: int = DEFAULT_PCT_DEPTH
    seed: int = 0
    actors: int = 0
    actor_names: list[str] = field(default_factory=list)
    steps: int = 0  # the most decisions one schedule made
    before: int = 0  # PCT: the bounded search's schedules before it (more than its maximum)
    seconds: float = 0.0

    def count(self, run: ScheduleRun) -> None:
        self.schedules += 1
        self.diverged += run.diverged > 0
        self.steps = max(self.steps, len(run.decisions))
        for trace in run.traces:
            self.actor_names += [a for a in trace.actors if a not in self.actor_names]
        self.actors = len(self.actor_names)
        verdict = run.verdict
        if verdict == "held":
            self.held += 1
        elif verdict == "violation":
            self.violations += 1
            if self.first_failure is None:
                self.first_failure = run
        elif verdict == "artifact":
            self.artifacts += 1
            if len(self.artifact_examples) < 3:
                self.artifact_examples.append(run.artifacts[0])
        else:
            self.errors += 1
            if len(self.error_examples) < 3:
                self.error_examples.append(run.outcome.errors[0])

    def miss_probability(self) -> float:
        """PCT's bound on missing a depth-d bug after this many schedules."""
        n, k, d = max(1, self.actors), max(1, self.steps), self.depth
        per_run = 1.0 / (n * k ** (d - 1))
        return math.exp(self.schedules * math.log1p(-per_run)) if per_run < 1 else 0.0

    def guarantee(self) -> str:
        """What was achieved, in one sentence."""
        found = f"{self.violations} violation{'s' if self.violations != 1 else ''}"
        extra = []
        if self.artifacts:
            extra.append(f"{self.artifacts} harness artifact(s), neither bug nor safe")
        if self.errors:
            extra.append(f"{self.errors} broken run(s)")
        if self.diverged:
            extra.append(f"{self.diverged} replay(s) that diverged")
        tail = f" ({'; '.join(extra)})" if extra else ""
        if self.mode == "exhaustive" and self.complete:
            return (
                f"all {self.schedules} schedules with at most {self.bound} preemptions "
                f"explored: {found}{tail}"
            )
        if self.mode == "exhaustive":
            return (
                f"{self.schedules} schedules with at most {self.bound} preemptions explored, "
                f"fewest preemptions first, stopped at the first violation: {found}{tail}"
            )
        bounded = (
            f"more than {self.before} schedules with at most {self.bound} preemptions, so "
            if self.before
            else ""
        )
        return (
            f"{bounded}P(a depth-{self.depth} bug was missed) <= {self.miss_probability():.3g} "
            "after "
            f"{self.schedules} schedules (PCT, seed {self.seed}, n={self.actors} actors, "
            f"k={self.steps} steps): {found}{tail}"
        )


def _alternatives(run: ScheduleRun, start: int, bound: int) -> Iterator[tuple[int, list[str]]]:
    """Every schedule that first differs from `run` at a decision from `start` on, with its
    preemption count, within `bound`."""
    decisions = run.decisions
    for i in range(start, len(decisions)):
        decision = decisions[i]
        before = preemptions(decisions[:i])
        for other in decision.runnable:
            if other == decision.chosen:
                continue
            count = before + (decision.previous in decision.runnable and other != decision.previous)
            if count <= bound:
                yield count, [d.chosen for d in decisions[:i]] + [other]


async def bounded_search(
    run_one: RunOne,
    *,
    bound: int = DEFAULT_BOUND,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    stop_at_first: bool = False,
    progress: Callable[[SearchResult], None] | None = None,
) -> SearchResult:
    """Every schedule with at most `bound` preemptions, fewest first (or until
    `max_schedules`, or the first violation when `stop_at_first`)."""
    result = SearchResult("exhaustive", bound)
    started = time.perf_counter()
    queue: list[tuple[int, int, list[str]]] = [(0, 0, [])]
    seen: set[tuple[str, ...]] = {()}
    pushed = 0
    while queue and result.schedules < max_schedules:
        _, _, prefix = heapq.heappop(queue)
        run = await run_one(Prefix(prefix))
        result.count(run)
        if progress is not None:
            progress(result)
        if stop_at_first and run.verdict == "violation":
            break
        for count, choices in _alternatives(run, len(prefix), bound):
            key = tuple(choices)
            if key not in seen:
                seen.add(key)
                pushed += 1
                heapq.heappush(queue, (count, pushed, choices))
    result.complete = not queue and not (stop_at_first and result.violations)
    result.seconds = time.perf_counter() - started
    return result


async def pct_search(
    run_one: RunOne,
    *,
    actors: Sequence[str],
    steps: int,
    schedules: int = DEFAULT_PCT_SCHEDULES,
    depth: int = DEFAULT_PCT_DEPTH,
    seed: int = 0,
    stop_at_first: bool = False,
    progress: Callable[[SearchResult], None] | None = None,
) -> SearchResult:
    """`schedules` PCT schedules of depth `depth`, seeded (schedule i uses seed + i)."""
    result = SearchResult("pct", 0, depth=depth, seed=seed)
    started = time.perf_counter()
    for i in range(schedules):
        run = await run_one(PCT(actors, max(steps, 1), depth, seed + i))
        result.count(run)
        result.steps = max(result.steps, steps)
        if progress is not None:
            progress(result)
        if stop_at_first and run.verdict == "violation":
            break
    result.seconds = time.perf_counter() - started
    return result


async def shrink(run_one: RunOne, failing: ScheduleRun) -> ScheduleRun:
    """The failing schedule with its preemptions undone, one at a time, while it still fails:
    each undone preemption lets the actor released last go on instead."""
    best = failing
    changed = True
    while changed and best.preemptions:
        changed = False
        for decision in reversed(best.decisions):
            if not decision.preemption:
                continue
            prefix = [d.chosen for d in best.decisions[: decision.index]]
            assert decision.previous is not None
            candidate = await run_one(Prefix([*prefix, decision.previous]))
            if candidate.verdict == "violation" and candidate.preemptions < best.preemptions:
                best, changed = candidate, True
                break
    return best


@dataclass
class Exploration:
    """One search on one target: what it achieved, and its failing schedule (shrunk)."""

    search: SearchResult
    failure: ScheduleRun | None

    @property
    def guarantee(self) -> str:
        return self.search.guarantee()

    def drawing(self, title: str) -> str:
        """The failing schedule drawn (empty when nothing failed)."""
        return draw(self.failure, title) if self.failure is not None else ""


async def explore(
    spec: TargetSpec,
    variant: str | None,
    script: TargetScript,
    *,
    bound: int = DEFAULT_BOUND,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    pct_schedules: int = DEFAULT_PCT_SCHEDULES,
    pct_depth: int = DEFAULT_PCT_DEPTH,
    seed: int = 0,
    stop_at_first: bool = False,
    database_url: str | None = None,
    workers: int | None = None,
    progress: Callable[[SearchResult], None] | None = None,
    announce: Callable[[Behind], None] | None = None,
    focus: Focus | None = None,
) -> Exploration:
    """Start the target's service behind the proxy, run the bounded search (PCT when the
    bounded space is larger than `max_schedules`), shrink the first failing schedule, stop
    everything. `focus`: only the statements it picks are decision points."""
    async with behind_proxy(spec, variant, database_url=database_url, workers=workers) as b:
        if announce is not None:
            announce(b)
        b.launcher.focus = focus
        explorer = Explorer(b.session, b.launcher, script)
        result = await bounded_search(
            explorer.run,
            bound=bound,
            max_schedules=max_schedules,
            stop_at_first=stop_at_first,
            progress=progress,
        )
        if result.schedules and not result.steps and not result.errors:
            raise CannotExplore(
                f"{spec.path}: no statement of the racing requests came through racebench's "
                "proxy: the service must take its database URL from {database_url}"
            )
        if not result.complete and not result.violations:
            first = result
            result = await pct_search(
                explorer.run,
                actors=first.actor_names,
                steps=first.steps,
                schedules=pct_schedules,
                depth=pct_depth,
                seed=seed,
                stop_at_first=stop_at_first,
                progress=progress,
            )
            result.before, result.bound = first.schedules, first.bound
        failure = result.first_failure
        if failure is not None:
            failure = await shrink(explorer.run, failure)
    return Exploration(result, failure)


# -- saved schedules ------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedSchedule:
    """A schedule as written to disk: enough to run it again."""

    target: str
    variant: str | None
    scenario: str
    choices: list[str]
    preemptions: int
    verdict: str
    evidence: str
    # racebench hints --confirm: only the statements that touch these tables (reads too, with
    # gate_reads) were decision points; a replay gates the same ones.
    gate: list[str] = field(default_factory=list)
    gate_reads: bool = False
    # The invariants it was checked with when the target file has none of its own (racebench
    # hints --confirm on a skeleton checks with its drafts): [{code, name, sql}, ...].
    invariants: list[dict[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return schedule_id(self.choices)

    @property
    def focus(self) -> Focus | None:
        return gates(self.gate, self.gate_reads) if self.gate else None

    def write(self, path: Path) -> Path:
        data = {"racebench_schedule": SCHEDULE_FORMAT, "id": self.id, **self.__dict__}
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> SavedSchedule:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a schedule racebench wrote: {error}") from None
        if not isinstance(data, dict) or data.get("racebench_schedule") != SCHEDULE_FORMAT:
            raise ValueError(f"{path}: not a schedule racebench wrote (racebench_schedule: 1)")
        try:
            return cls(
                target=str(data["target"]),
                variant=data.get("variant"),
                scenario=str(data["scenario"]),
                choices=[str(c) for c in data["choices"]],
                preemptions=int(data.get("preemptions", 0)),
                verdict=str(data.get("verdict", "")),
                evidence=str(data.get("evidence", "")),
                gate=[str(t) for t in data.get("gate", [])],
                gate_reads=bool(data.get("gate_reads", False)),
                invariants=[
                    {k: str(v) for k, v in dict(i).items()} for i in data.get("invariants", [])
                ],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: a schedule without {error}") from None


# -- the failing schedule, drawn ----------------------------------------------------------


def one_line(sql: str, width: int = SQL_PREVIEW_CHARS) -> str:
    """`sql` on one line, cut to `width` characters."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 4] + " ..."


def schedule_timeline(run: ScheduleRun) -> list[TimelineEntry]:
    """The run's timeline (sends, answers, RESULT) with every statement each actor ran, at
    the moment it went upstream, labelled with the decision that released it (* a
    preemption): the actual SQL, in the order it ran."""
    entries = list(run.outcome.timeline)
    events = [e for e in entries if isinstance(e, TimelineEvent)]
    for trace in run.traces:
        if not trace.sent_at:
            continue
        first = min(trace.sent_at, key=lambda a: trace.sent_at[a])
        send = next(
            (e for e in events if e.actor == first and e.kind == "send"),
            None,
        )
        if send is None:
            continue
        zero = trace.sent_at[first] - send.t_ms / 1000.0
        by_index = {d.index: d for d in trace.decisions}
        for ran in trace.ran:
            stmt = ran.statement
            if stmt.started is None:
                continue
            result = stmt.tag or (
                f"ERROR {stmt.error}"
                if stmt.error
                else "rows (portal suspended)"
                if stmt.suspended
                else "no result"
            )
            if stmt.error and stmt.message:
                result += f" ({stmt.message})"
            label = ""
            decision = by_index.get(ran.decision) if ran.decision is not None else None
            if decision is not None:
                label = f"{decision.index}{'*' if decision.preemption else ''}"
            kind: EventKind = (
                "error" if stmt.error else ("release" if stmt.tag in ENDS else "arrive")
            )
            entries.append(
                TimelineEvent(
                    kind=kind,
                    actor=ran.actor,
                    t_ms=round((stmt.started - zero) * 1000.0, 3),
                    what=f"{one_line(stmt.sql)} -> {result}",
                    label=label,
                )
            )
    entries.sort(key=lambda e: e.t_ms if isinstance(e, TimelineEvent) else e.start_ms)
    return entries


ENDS = frozenset({"COMMIT", "ROLLBACK"})


def draw(run: ScheduleRun, title: str) -> str:
    """The failing schedule as text: columns of SQL per actor, and the invariants' evidence."""
    header = (
        f"{title}: schedule {run.id}, {run.preemptions} preemption(s), "
        f"{len(run.decisions)} decisions (labels: decision number, * a preemption)"
    )
    return render(schedule_timeline(run), header)


def result_line(run: ScheduleRun) -> str:
    return verdict_line(run.outcome.check, run.outcome.errors)


__all__ = [
    "HARNESS_ACTOR",
    "Exploration",
    "Explorer",
    "SavedSchedule",
    "ScheduleRun",
    "SearchResult",
    "bounded_search",
    "draw",
    "explore",
    "one_line",
    "pct_search",
    "schedule_id",
    "schedule_timeline",
    "shrink",
]
