"""racebench's pytest plugin (entry point `pytest11`): race tests in about ten lines.

Fixtures (all prefixed `racebench_`):
- `racebench_database_url`: a fresh database for the session (DATABASE_URL's server, or the
  embedded one), dropped at the end.
- `racebench_gateway`: the Razorpay simulator (checkout signatures, signed webhook events).
- `racebench_app`: `await racebench_app("for_update")`: the service in-process under a
  strategy (a name, or a LockStrategy instance of your own); one per strategy per test.
- `racebench_race`: `race = await racebench_race("for_update")`: a Race on clean tables; its
  `together(*requests, schedule=...)` is the concurrent launcher (a barrier, no sleeps).
- `racebench_check`: `await racebench_check(race)`: every invariant; fails the test with the
  evidence (payment ids, counts, event ids) if one is violated.

    async def test_capture_once(racebench_race, racebench_check) -> None:
        race = await racebench_race("for_update")
        payment = await race.payment()
        await race.together(
            race.verify("client", payment),
            race.webhook("webhook", payment),
            schedule=BOTH_READ_PENDING,  # from racebench.scenarios.simultaneous
        )
        await racebench_check(race)

- `racebench_target`: `run = await racebench_target("target.toml", "simultaneous", repeat=5)`:
  a scenario against your own service (a target file, docs/targets.md), forced by the
  table-lock barrier; `run.caught` counts the runs that broke an invariant, and a run the
  barrier did not force fails the test.

    async def test_my_service_captures_once(racebench_target) -> None:
        run = await racebench_target("examples/shop/target.toml", "simultaneous", repeat=5)
        assert run.caught == 0, run.message()

- `racebench_explore`: `found = await racebench_explore("target.toml", "split_invoice")`: the
  scenario's interleavings scheduled at the PostgreSQL wire (racebench's proxy between the
  service and its database): every schedule within 2 preemptions. A violation fails the test
  with the SQL of the failing schedule drawn; `expect_bug=True` asks for one instead.

    async def test_no_interleaving_breaks_my_service(racebench_explore) -> None:
        found = await racebench_explore("target.toml", "split_invoice", variant="reconciled")
        assert found.search.complete

The async fixtures follow the test's event loop, so they work under pytest-asyncio's defaults
(a loop per test function) and under a session loop alike: the database is made once per
session, the app and the harness connection once per test (about 0.1 s).
Importing this module is cheap; the harness loads when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from racebench.harness.cells import RunOutcome
    from racebench.harness.explore.explorer import Exploration
    from racebench.harness.gateway import Gateway
    from racebench.harness.invariants import CheckResult
    from racebench.harness.locks import Monitor
    from racebench.harness.runner import Race
    from racebench.harness.target.file import TargetSpec
    from racebench.harness.target.race import TargetScript
    from racebench.harness.white_box import InProcessTarget
    from racebench.reference_service.strategies import LockStrategy

AppFactory = Callable[["str | LockStrategy"], Awaitable["InProcessTarget"]]
RaceFactory = Callable[..., Awaitable["Race"]]
Checker = Callable[["Race"], Awaitable["CheckResult"]]
TargetRacer = Callable[..., Awaitable["TargetRun"]]
ExploreRunner = Callable[..., Awaitable["Exploration"]]


@dataclass(frozen=True)
class TargetRun:
    """The runs of one scenario on a target: how many were caught, and why."""

    scenario: str
    outcomes: list[RunOutcome]

    @property
    def caught(self) -> int:
        return sum(1 for o in self.outcomes if o.caught)

    @property
    def errors(self) -> list[str]:
        return [e for o in self.outcomes for e in o.errors]

    def message(self) -> str:
        lines = [f"{self.scenario}: {self.caught}/{len(self.outcomes)} run(s) caught"]
        lines.extend(o.check.message() for o in self.outcomes if o.caught)
        return "\n".join(lines[:6] + self.errors[:3])


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("racebench", "racebench race tests")
    group.addoption(
        "--racebench-database-url",
        dest="racebench_database_url",
        default=None,
        help="PostgreSQL server for racebench fixtures (default: $DATABASE_URL, else embedded)",
    )
    parser.addini(
        "racebench_database_url",
        "PostgreSQL server for racebench fixtures (default: $DATABASE_URL, else embedded)",
        default=None,
    )


@pytest.fixture(scope="session")
def racebench_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this session, dropped at the end."""
    from racebench.harness.database import provision

    server = request.config.getoption("racebench_database_url") or request.config.getini(
        "racebench_database_url"
    )
    with provision(server or None) as db:
        yield db.url


@pytest.fixture(scope="session")
def racebench_gateway() -> Gateway:
    """The Razorpay simulator, with the service's test secrets."""
    from racebench.harness.gateway import Gateway

    return Gateway()


@pytest_asyncio.fixture
async def racebench_monitor(racebench_database_url: str) -> AsyncIterator[Monitor]:
    """The harness's own connection to the database (cleaning, lock waits, invariants)."""
    from racebench.harness.locks import Monitor

    async with Monitor.open(racebench_database_url) as monitor:
        yield monitor


@pytest_asyncio.fixture
async def racebench_app(racebench_database_url: str) -> AsyncIterator[AppFactory]:
    """`await racebench_app(strategy)`: the in-process service under `strategy` (cached)."""
    from racebench.harness.white_box import InProcessTarget

    opened: dict[Any, InProcessTarget] = {}
    async with AsyncExitStack() as stack:

        async def get(strategy: str | LockStrategy) -> InProcessTarget:
            key = strategy if isinstance(strategy, str) else id(strategy)
            if key not in opened:
                manager = InProcessTarget.open(racebench_database_url, strategy)
                opened[key] = await stack.enter_async_context(manager)
            return opened[key]

        yield get


@pytest_asyncio.fixture
async def racebench_race(
    racebench_app: AppFactory, racebench_monitor: Monitor, racebench_gateway: Gateway
) -> RaceFactory:
    """`await racebench_race(strategy, schedules=True, jitter_seed=None)`: a Race on clean
    tables, in-process, under `strategy`."""
    from racebench.harness.runner import new_race

    async def make(
        strategy: str | LockStrategy, *, schedules: bool = True, jitter_seed: str | None = None
    ) -> Race:
        target = await racebench_app(strategy)
        return await new_race(
            target,
            racebench_monitor,
            gateway=racebench_gateway,
            use_schedules=schedules,
            jitter_seed=jitter_seed,
        )

    return make


@pytest.fixture
def racebench_check() -> Checker:
    """`await racebench_check(race)`: fails the test, with the evidence, unless every
    invariant holds (and the race's own expectations held); returns the check."""

    async def check(race: Race) -> CheckResult:
        result = await race.check()
        if not result.valid or race.errors:
            problems = [result.message()] if not result.valid else []
            pytest.fail("\n".join(problems + race.errors), pytrace=False)
        return result

    return check


@pytest_asyncio.fixture
async def racebench_target(request: pytest.FixtureRequest) -> TargetRacer:
    """`await racebench_target(file, scenario="simultaneous", repeat=1, variant=None,
    barrier=True)`: run one scenario on a target (its service started from the file's command,
    or reached at its URL) and return a TargetRun. A run that broke and was not caught (a
    barrier that forced nothing among them) fails the test; a caught run's errors (a payment
    the bug left uncaptured) are part of its catch, in `run.message()`, as in `racebench race`.
    A target whose [database].url is "{database_url}" gets a fresh database on the plugin's
    server."""
    from racebench.harness.target.matrix import race_target_scenario

    async def race(
        file: str,
        scenario: str = "simultaneous",
        *,
        repeat: int = 1,
        variant: str | None = None,
        strategy: str | None = None,  # the older name of `variant`
        barrier: bool = True,
    ) -> TargetRun:
        spec, script = _target_script(file, scenario)
        outcomes = await race_target_scenario(
            spec,
            script,
            repeat=repeat,
            variant=variant or strategy,
            use_barrier=barrier,
            database_url=server_of(request) if spec.owns_database else None,
        )
        run = TargetRun(scenario, outcomes)
        if any(o.errors and not o.caught for o in outcomes):
            pytest.fail(run.message(), pytrace=False)
        return run

    return race


@pytest_asyncio.fixture
async def racebench_explore(request: pytest.FixtureRequest) -> ExploreRunner:
    """`await racebench_explore(file, scenario="simultaneous", variant=None, preemptions=2,
    max_schedules=400, expect_bug=False)`: start the target's service behind racebench's
    proxy and explore the scenario's interleavings (every schedule within the preemption
    bound, or PCT past max_schedules). Returns the Exploration (`.guarantee`, `.search`,
    `.failure`, `.drawing(title)`). With `expect_bug`, the search stops at the first violation;
    without, a violation, a broken run or a harness artifact fails the test with the failing
    schedule drawn."""
    from racebench.harness.explore.explorer import explore

    async def run(
        file: str,
        scenario: str = "simultaneous",
        *,
        variant: str | None = None,
        preemptions: int = 2,
        max_schedules: int = 400,
        expect_bug: bool = False,
    ) -> Exploration:
        spec, script = _target_script(file, scenario)
        found = await explore(
            spec,
            variant,
            script,
            bound=preemptions,
            max_schedules=max_schedules,
            stop_at_first=expect_bug,
            database_url=server_of(request) if spec.owns_database else None,
        )
        search = found.search
        if not expect_bug and (search.violations or search.errors or search.artifacts):
            title = f"{scenario} x {variant or spec.name}"
            detail = found.drawing(title) or "; ".join(
                search.error_examples + search.artifact_examples
            )
            pytest.fail(f"{found.guarantee}\n{detail}", pytrace=False)
        return found

    return run


def _target_script(file: str, scenario: str) -> tuple[TargetSpec, TargetScript]:
    """The target file and the scenario's script on it; the test fails on an unknown scenario
    and is skipped when the scenario does not run on that target."""
    from racebench.harness.target.file import load
    from racebench.scenarios import SCENARIOS

    spec = load(file)
    if scenario not in SCENARIOS:
        pytest.fail(f"unknown scenario {scenario!r}; choose from: {', '.join(SCENARIOS)}")
    script = SCENARIOS[scenario].on_target(spec)
    if isinstance(script, str):
        pytest.skip(f"{scenario} does not run on {spec.name}: {script}")
    return spec, script


def server_of(request: pytest.FixtureRequest) -> str:
    """The plugin's server (through its session database), to make a target's database on."""
    database_url: str = request.getfixturevalue("racebench_database_url")
    return database_url
