"""Over http, a report names the actor whose request it is, whichever worker served it.

The harness gives each actor a kept-alive connection to a worker of its own, and the race gate
used to name a report by the worker's pid alone. A request that reached the other actor's
worker (a connection the client had to reopen) was then taken for that actor: its arrival
replaced the held actor's release, and the first request hung until the schedule gave up.
Each request now carries its actor's name (X-Racebench-Actor), read only by a service that
reports to a gate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from racebench.harness.locks import Monitor
from racebench.harness.runner import new_race
from racebench.harness.white_box import HttpTarget
from racebench.results import TimelineEvent
from racebench.scenarios import SCENARIOS


async def test_two_actors_on_one_worker_keep_their_names(
    racebench_database_url: str, racebench_monitor: Monitor
) -> None:
    """simultaneous x optimistic with the webhook's request sent to the client's worker: both
    reach the read and are let go together, each under its own name."""
    async with HttpTarget.open(racebench_database_url, "optimistic") as target:
        prepare = target.prepare

        async def one_worker(actors: Sequence[str]) -> None:
            """Route as usual, then give the second actor a connection to the first's worker."""
            await prepare(actors)
            first, second = actors
            wanted = await target._worker_of(target.client(first))
            for _ in range(64):
                client = target._new_client()
                if await target._worker_of(client) == wanted:
                    await target.client(second).aclose()
                    target._clients[second] = client
                    return
                await client.aclose()
            raise AssertionError(f"no connection reached worker {wanted}")

        target.prepare = one_worker  # type: ignore[method-assign]
        race = await new_race(target, racebench_monitor)
        await SCENARIOS["simultaneous"].script(race)
        result = await race.check()
    assert race.errors == []
    assert result.valid, result.message()
    events = [e for e in race.timeline.entries() if isinstance(e, TimelineEvent)]
    arrivals = [e.actor for e in events if e.kind == "arrive" and "reads payment" in e.what]
    assert set(arrivals) == {"client", "webhook"}
    routing = [e.what for e in events if e.what.startswith("routing:")]
    assert any("webhook's request was served by worker" in what for what in routing), routing


async def test_a_few_more_actors_than_workers_are_spread_evenly(
    racebench_database_url: str,
) -> None:
    """invoice_fan_in's eight actors on two workers: four each, never all on one (app_lock's
    waiters would then queue on one worker's asyncio.Lock, where the harness cannot see them),
    and still unnamed."""
    actors = [f"p{n}" for n in range(1, 9)]
    async with HttpTarget.open(racebench_database_url, "app_lock") as target:
        await target.prepare(actors)
        workers = [await target._worker_of(target.client(actor)) for actor in actors]
        assert target.gate.actor_by_worker == {}
    assert sorted(Counter(workers).values()) == [4, 4], workers
