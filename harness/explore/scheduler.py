"""The scheduler of one launch: the racing requests' statements, held at the proxy, released one
at a time in the order a policy chooses.

The actors (a launch's requests) are sent one after the other, each once the one before it is
quiet, so that the first statement that arrives belongs to the one just sent. From then on a
statement belongs to the actor whose transaction its connection carries; a statement that opens
a transaction goes to the actor that is running (neither held, nor in a statement, nor answered).

A decision point comes when every actor is quiet: held at the proxy (its next statement waits
there), blocked inside PostgreSQL (its statement's backend is in `pg_blocking_pids`), parked
(running with no statement for PARKED_S: it waits on something outside the database, such as an
in-process lock), or answered. The runnable actors are the held ones; the policy picks one, its
statement goes upstream, and the scheduler waits for quiet again. A statement that reads and
writes nothing another transaction sees (BEGIN, SET, SHOW ...) is no decision point: it goes at
once.

A preemption is a decision that switches away from the actor released last while it is still
runnable (CHESS's context switch that the program did not ask for). The trace of a launch is its
decisions and every statement each actor ran, with its times, tag and rows (the proxy's
transcript).

A harness artifact is a stall the scheduler caused: an actor whose statement failed on a lock
or statement timeout, or whose request failed, while it waited on a transaction the scheduler
held; or a launch that made no progress for STALL_S. A schedule with an artifact is neither a
bug nor safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from racebench.harness.explore.proxy import Connection, Proxy, Statement, TxnStatus
from racebench.harness.requests import Answer, Request

# Statements that are no decision point: they read and write nothing another transaction sees
# (a snapshot is taken by the first statement after BEGIN, not by BEGIN).
TRIVIAL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|SET\s|SHOW\s|RESET\s|SAVEPOINT\s|RELEASE\s|DISCARD\s"
    r"|DEALLOCATE\s|SELECT\s+1\s*;?\s*$)",
    re.IGNORECASE,
)
# Which statements are decision points, by their SQL (see SchedulerLauncher.focus).
Focus = Callable[[str], bool]
# How often a statement that has not ended is looked up in pg_blocking_pids.
BLOCK_POLL_S = 0.002
# An actor that runs this long without a statement waits on something outside the database.
PARKED_S = 0.25
# A launch that makes no progress for this long is stalled: a harness artifact.
STALL_S = 15.0
# SQLSTATEs of a wait the service gave up: lock_timeout, statement_timeout / cancel.
TIMEOUT_STATES = frozenset({"55P03", "57014"})


class Policy(Protocol):
    """Chooses the actor whose held statement goes next."""

    def choose(self, index: int, runnable: Sequence[str], previous: str | None) -> str: ...


def non_preemptive(runnable: Sequence[str], previous: str | None) -> str:
    """The default: the actor released last while it can go on, else the first runnable."""
    return previous if previous in runnable and previous is not None else runnable[0]


class Prefix:
    """Replays `choices`, then runs without preempting. A choice that is not runnable (the
    service did something else this time) falls back to the default and is counted."""

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = list(choices)
        self.diverged = 0

    def choose(self, index: int, runnable: Sequence[str], previous: str | None) -> str:
        if index < len(self.choices):
            wanted = self.choices[index]
            if wanted in runnable:
                return wanted
            self.diverged += 1
        return non_preemptive(runnable, previous)


class PCT:
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), seeded: random
    distinct priorities for the actors, and depth - 1 change points among the first `steps`
    decisions, where the running actor drops below every other. The highest-priority runnable
    actor always goes. A bug of depth d is found with probability at least 1 / (n k^(d-1))."""

    def __init__(self, actors: Sequence[str], steps: int, depth: int, seed: int) -> None:
        rng = random.Random(seed)
        order = list(actors)
        rng.shuffle(order)
        # Priorities depth .. depth + n - 1 (higher runs first); change points lower to 1..d-1.
        self.priority = {actor: depth + i for i, actor in enumerate(reversed(order))}
        self.changes = {rng.randint(0, max(0, steps - 1)): depth - 1 - j for j in range(depth - 1)}
        self.seed = seed

    def choose(self, index: int, runnable: Sequence[str], previous: str | None) -> str:
        chosen = max(runnable, key=lambda a: self.priority.get(a, 0))
        if index in self.changes:
            self.priority[chosen] = self.changes[index]
            chosen = max(runnable, key=lambda a: self.priority.get(a, 0))
        return chosen


@dataclass(frozen=True)
class Decision:
    """One decision point: who could go, who went last, who was chosen (and its statement)."""

    index: int
    runnable: tuple[str, ...]
    previous: str | None
    chosen: str
    sql: str

    @property
    def preemption(self) -> bool:
        return self.previous in self.runnable and self.chosen != self.previous


@dataclass(frozen=True)
class Ran:
    """A statement an actor ran, as the proxy recorded it."""

    actor: str
    statement: Statement
    decision: int | None  # the decision that released it (None: it went at once)


@dataclass
class LaunchTrace:
    """What one launch did: its decisions, its statements, its artifacts."""

    actors: list[str]
    decisions: list[Decision] = field(default_factory=list)
    ran: list[Ran] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # perf_counter of each send
    strangers: int = 0  # statements outside the launch's actors, passed through

    @property
    def preemptions(self) -> int:
        return sum(d.preemption for d in self.decisions)


def preemptions(decisions: Sequence[Decision]) -> int:
    return sum(d.preemption for d in decisions)


@dataclass(eq=False)
class _Actor:
    name: str
    sent: bool = False
    finished: bool = False
    held: tuple[Connection, Statement, asyncio.Future[None]] | None = None
    inflight: Statement | None = None
    idle_since: float = 0.0  # when it was last seen doing something
    last_connection: int | None = None
    waited_on_held: bool = False  # seen blocked by a transaction the scheduler held


class ScheduledLaunch:
    """The proxy's gate for one launch; `run()` sends the requests and drives the decisions."""

    def __init__(
        self,
        proxy: Proxy,
        monitor: asyncpg.Connection,
        policy: Policy,
        trace: LaunchTrace,
        focus: Focus | None = None,
    ) -> None:
        self.proxy = proxy
        self.monitor = monitor
        self.policy = policy
        self.trace = trace
        self.focus = focus
        self._actors = {name: _Actor(name) for name in trace.actors}
        self._by_connection: dict[int, str] = {}  # connection id -> actor of its transaction
        self._changed = asyncio.Event()
        self._done = False
        self._previous: str | None = None
        self._decision_of: dict[int, int] = {}  # statement id -> decision index

    # -- the gate (called by the proxy) -----------------------------------------------------

    async def before(self, conn: Connection, stmt: Statement) -> None:
        actor = None if self._done else self._attribute(conn)
        if actor is None:
            self.trace.strangers += 1
            return
        state = self._actors[actor]
        state.last_connection = conn.id
        self._by_connection[conn.id] = actor
        if TRIVIAL.match(stmt.sql) or (self.focus is not None and not self.focus(stmt.sql)):
            self._started(state, stmt, None)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.held = (conn, stmt, future)
        self._changed.set()
        try:
            await future
        finally:
            state.held = None
        self._started(state, stmt, self._decision_of.get(stmt.id))

    def statement_done(self, stmt: Statement) -> None:
        for state in self._actors.values():
            if state.inflight is stmt:
                state.inflight = None
                state.idle_since = time.perf_counter()
                if stmt.error in TIMEOUT_STATES and state.waited_on_held:
                    self.trace.artifacts.append(
                        f"{state.name}: {stmt.error} ({stmt.message or 'timeout'}) while it "
                        "waited on a transaction the scheduler held"
                    )
        self._changed.set()

    def connection_ready(self, conn: Connection, _previous: TxnStatus | None) -> None:
        if conn.status is TxnStatus.IDLE:
            self._by_connection.pop(conn.id, None)  # its transaction is over
        self._changed.set()

    def _started(self, state: _Actor, stmt: Statement, decision: int | None) -> None:
        state.inflight = stmt
        state.idle_since = time.perf_counter()
        self.trace.ran.append(Ran(state.name, stmt, decision))

    def _attribute(self, conn: Connection) -> str | None:
        owner = self._by_connection.get(conn.id)
        if owner is not None and conn.status is not TxnStatus.IDLE:
            return owner
        running = [
            s
            for s in self._actors.values()
            if s.sent and not s.finished and s.held is None and s.inflight is None
        ]
        if not running:
            return owner  # a pipelined statement right after its transaction's last
        for state in running:
            if state.last_connection == conn.id:
                return state.name
        return running[0].name

    # -- the launch -------------------------------------------------------------------------

    async def run(
        self, send: Callable[[Request], Awaitable[Answer]], requests: Sequence[Request]
    ) -> list[Answer]:
        """Send the requests (each once the one before is quiet), then decide until every
        one has answered. Whatever happens, every held statement is let go at the end."""
        tasks: dict[str, asyncio.Task[Answer]] = {}
        try:
            for request in requests:
                state = self._actors[request.actor]
                state.sent, state.idle_since = True, time.perf_counter()
                self.trace.sent_at[request.actor] = time.perf_counter()
                tasks[request.actor] = asyncio.create_task(self._send(send, request))
                await self._quiet()
            while not all(s.finished for s in self._actors.values()):
                await self._quiet()
                runnable = [s.name for s in self._actors.values() if s.held is not None]
                if not runnable and not all(s.finished for s in self._actors.values()):
                    await self._wait_for_change("every actor is blocked or parked")
                    continue
                if runnable:
                    self._decide(runnable)
            return [await tasks[r.actor] for r in requests]
        except ScheduleStalled:
            # Let everything go, give the requests their time to answer, then carry on: the
            # schedule is an artifact, and the next one starts from a service at rest.
            self._done = True
            self._let_go()
            pending = [t for t in tasks.values() if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=STALL_S)
            raise
        except Exception:
            self._done = True
            self._let_go()
            raise
        finally:
            # Interrupted (Ctrl-C, SIGTERM, a timeout) nothing more is released upstream:
            # stopping the proxy cancels the held statements and closes their connections.
            self._done = True
            for task in tasks.values():
                task.cancel()

    def _let_go(self) -> None:
        for state in self._actors.values():
            if state.held is not None and not state.held[2].done():
                state.held[2].set_result(None)

    async def _send(self, send: Callable[[Request], Awaitable[Answer]], request: Request) -> Answer:
        try:
            answer = await send(request)
        finally:
            state = self._actors[request.actor]
            state.finished = True
            self._changed.set()
        if (answer.status == 0 or answer.status >= 500) and state.waited_on_held:
            self.trace.artifacts.append(
                f"{request.actor} answered {answer.status or 'nothing'} after waiting on a "
                "transaction the scheduler held"
            )
        return answer

    def _decide(self, runnable: list[str]) -> None:
        index = len(self.trace.decisions)
        chosen = self.policy.choose(index, runnable, self._previous)
        state = self._actors[chosen]
        assert state.held is not None
        _, stmt, future = state.held
        decision = Decision(index, tuple(runnable), self._previous, chosen, stmt.sql)
        self.trace.decisions.append(decision)
        self._decision_of[stmt.id] = index
        self._previous = chosen
        state.held = None
        state.inflight = stmt  # from now until it ends (or blocks)
        state.idle_since = time.perf_counter()
        future.set_result(None)

    async def _quiet(self) -> None:
        """Until every sent actor is held, blocked in PostgreSQL, parked or answered."""
        deadline = time.perf_counter() + STALL_S
        while True:
            self._changed.clear()
            waiting = await self._still_running()
            if not waiting:
                return
            if time.perf_counter() > deadline:
                names = ", ".join(sorted(waiting))
                self.trace.artifacts.append(
                    f"stalled: {names} made no progress for {STALL_S:.0f} s"
                )
                raise ScheduleStalled(f"{names} made no progress for {STALL_S:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), BLOCK_POLL_S)

    async def _still_running(self) -> set[str]:
        now = time.perf_counter()
        running: set[str] = set()
        in_statement: dict[int, _Actor] = {}
        for state in self._actors.values():
            if not state.sent or state.finished or state.held is not None:
                continue
            stmt = state.inflight
            if stmt is not None and stmt.ended is None:
                if stmt.backend_pid is not None and stmt.started is not None:
                    in_statement[stmt.backend_pid] = state
                else:
                    running.add(state.name)
            elif now - state.idle_since < PARKED_S:
                running.add(state.name)
        if in_statement:
            blocked = await self._blocked(list(in_statement))
            held_pids = self._held_backends()
            for pid, state in in_statement.items():
                blockers = blocked.get(pid)
                if not blockers:
                    running.add(state.name)
                elif held_pids & set(blockers):
                    state.waited_on_held = True
        return running

    def _held_backends(self) -> set[int]:
        """The backends of the actors held at the proxy (their open transactions' locks)."""
        return {
            s.held[0].backend_pid
            for s in self._actors.values()
            if s.held is not None and s.held[0].backend_pid is not None
        }

    async def _blocked(self, pids: list[int]) -> dict[int, list[int]]:
        rows = await self.monitor.fetch(
            "SELECT pid, pg_blocking_pids(pid) AS blockers FROM unnest($1::int[]) AS pid", pids
        )
        return {row["pid"]: list(row["blockers"]) for row in rows}

    async def _wait_for_change(self, why: str) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), STALL_S)
        except TimeoutError:
            states = "; ".join(self._state_of(s) for s in self._actors.values())
            self.trace.artifacts.append(f"stalled: {why} for {STALL_S:.0f} s ({states})")
            raise ScheduleStalled(f"{why} for {STALL_S:.0f} s ({states})") from None

    def _state_of(self, state: _Actor) -> str:
        if state.finished:
            return f"{state.name} answered"
        if state.held is not None:
            return f"{state.name} held at {state.held[1].sql[:40]!r}"
        if state.inflight is not None and state.inflight.ended is None:
            return f"{state.name} in {state.inflight.sql[:40]!r}"
        idle = time.perf_counter() - state.idle_since
        return f"{state.name} ran no statement for {idle:.1f} s"


class ScheduleStalled(RuntimeError):
    """A launch made no progress for STALL_S: a harness artifact, never a verdict."""


class SchedulerLauncher:
    """Session.launcher for racebench explore: each launch runs under a fresh ScheduledLaunch
    with the policy `policy_for(launch index)` and leaves its trace in `traces`."""

    def __init__(
        self, proxy: Proxy, monitor: asyncpg.Connection, policy: Policy | None = None
    ) -> None:
        self.proxy = proxy
        self.monitor = monitor
        self.policy: Policy = policy or Prefix([])
        self.traces: list[LaunchTrace] = []
        # Only the statements `focus` picks are decision points (None: every one but the
        # trivial); racebench hints --confirm gates the contended table this way.
        self.focus: Focus | None = None

    def reset(self, policy: Policy) -> None:
        self.policy = policy
        self.traces = []

    async def launch(
        self, send: Callable[[Request], Awaitable[Answer]], requests: Sequence[Request]
    ) -> list[Answer]:
        trace = LaunchTrace([r.actor for r in requests])
        self.traces.append(trace)
        launch = ScheduledLaunch(
            self.proxy, self.monitor, _Offset(self.policy, self), trace, self.focus
        )
        proxy = self.proxy
        proxy.gate = launch
        proxy.on_statement_done = launch.statement_done
        proxy.on_ready = launch.connection_ready
        try:
            return await launch.run(send, requests)
        finally:
            proxy.gate = None
            proxy.on_statement_done = None
            proxy.on_ready = None

    def decisions(self) -> list[Decision]:
        return [d for trace in self.traces for d in trace.decisions]


class _Offset:
    """A run's policy sees one sequence of decisions across its launches."""

    def __init__(self, policy: Policy, launcher: SchedulerLauncher) -> None:
        self.policy = policy
        self.before = len(launcher.decisions()) - len(launcher.traces[-1].decisions)

    def choose(self, index: int, runnable: Sequence[str], previous: str | None) -> str:
        return self.policy.choose(self.before + index, runnable, previous)


__all__ = [
    "PCT",
    "Decision",
    "Focus",
    "LaunchTrace",
    "Policy",
    "Prefix",
    "Ran",
    "ScheduleStalled",
    "ScheduledLaunch",
    "SchedulerLauncher",
    "non_preemptive",
    "preemptions",
]
