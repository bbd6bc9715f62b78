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

The async fixtures follow the test's event loop, so they work under pytest-asyncio's defaults
(a loop per test function) and under a session loop alike: the database is made once per
session, the app and the harness connection once per test (about 0.1 s).
Importing this module is cheap; the harness loads when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from racebench.harness.gateway import Gateway
    from racebench.harness.invariants import CheckResult
    from racebench.harness.locks import Monitor
    from racebench.harness.runner import Race
    from racebench.harness.targets import InProcessTarget
    from racebench.reference_service.strategies import LockStrategy

AppFactory = Callable[["str | LockStrategy"], Awaitable["InProcessTarget"]]
RaceFactory = Callable[..., Awaitable["Race"]]
Checker = Callable[["Race"], Awaitable["CheckResult"]]


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
    from racebench.harness.targets import InProcessTarget

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
