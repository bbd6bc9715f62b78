"""Sequential verifies through the in-process app: what a capture costs per strategy.

    .venv/bin/python benchmarks/verify_inprocess.py --strategies none,for_update --n 1000

Strategies alternate in rounds (A B A B ...) so that machine drift hits them alike; each
round verifies `n` distinct, freshly seeded payments one after another and reports the median
latency. The summary is the median over rounds. Also times `race_point()` with no controller.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from racebench.harness.database import provision
from racebench.harness.gateway import Gateway
from racebench.reference_service.app import create_app
from racebench.reference_service.config import Settings
from racebench.reference_service.race_points import RacePoint, race_point

SEED_PAYMENTS = """
WITH inv AS (
    INSERT INTO invoices (amount, currency)
    SELECT 100000, 'INR' FROM generate_series(1, $1) RETURNING id
)
INSERT INTO payments (invoice_id, amount, currency, razorpay_order_id)
SELECT id, 100000, 'INR', 'order_bench' || id FROM inv
RETURNING id, razorpay_order_id
"""


async def one_round(client: httpx.AsyncClient, n: int, gateway: Gateway) -> list[float]:
    db = client._transport.app.state.service.db  # type: ignore[attr-defined]
    async with db.connection() as conn:
        rows = await conn.fetch(SEED_PAYMENTS, n)
    bodies = [gateway.checkout(r["id"], r["razorpay_order_id"]).body() for r in rows]
    latencies = []
    for body in bodies:
        start = time.perf_counter()
        response = await client.post("/payments/verify", json=body)
        latencies.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200 and not response.json()["replayed"], response.text
    return latencies


async def race_point_cost(calls: int = 1_000_000) -> tuple[float, float]:
    """ns per `await race_point(...)` with no controller, and per `await` of an empty coroutine."""

    async def empty() -> None:
        return None

    start = time.perf_counter()
    for _ in range(calls):
        await race_point(RacePoint.AFTER_READ)
    point = (time.perf_counter() - start) / calls * 1e9
    start = time.perf_counter()
    for _ in range(calls):
        await empty()
    baseline = (time.perf_counter() - start) / calls * 1e9
    return point, baseline


async def main(url: str, strategies: list[str], n: int, rounds: int) -> None:
    gateway = Gateway()
    clients = {}
    for name in strategies:
        app = create_app(Settings(database_url=url, lock_strategy=name))
        await app.state.service.start()
        clients[name] = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        )
    medians: dict[str, list[float]] = {name: [] for name in strategies}
    rates: dict[str, list[float]] = {name: [] for name in strategies}
    await one_round(clients[strategies[0]], 200, gateway)  # warm-up: pools, prepared statements
    for r in range(rounds):
        for name in strategies:
            start = time.perf_counter()
            latencies = await one_round(clients[name], n, gateway)
            seconds = time.perf_counter() - start
            medians[name].append(statistics.median(latencies))
            rates[name].append(n / seconds)
            print(
                f"round {r + 1} {name:>20}: median {medians[name][-1]:.3f} ms, "
                f"p99 {statistics.quantiles(latencies, n=100)[98]:.3f} ms"
            )
    print(f"\n{n} sequential verifies on distinct payments, median of {rounds} rounds:")
    for name in strategies:
        print(
            f"  {name:>20}: {statistics.median(medians[name]):.3f} ms per verify "
            f"(rounds: {', '.join(f'{m:.3f}' for m in medians[name])})"
        )
    point, baseline = await race_point_cost()
    print(
        f"\nawait race_point() with no controller: {point:.1f} ns; "
        f"an empty coroutine: {baseline:.1f} ns"
    )
    for client in clients.values():
        await client.aclose()
        await client._transport.app.state.service.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strategies", default="none,for_update")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with provision(args.database_url) as db:
        asyncio.run(main(db.url, args.strategies.split(","), args.n, args.rounds))
