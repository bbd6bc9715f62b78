"""`racebench bench --target FILE`: the load profiles against a target's own requests.

The work items come from the same profiles as the reference bench (loadtests/profiles.py:
verify, webhook, contention, hot_row, mixed), with the target's verify and webhook requests in
place of the reference service's, on a pool of payments made with the target's payment
template. They are sent by closed-model users in this process (asyncio, one connection each),
not by Locust processes; the violations are counted afterwards with the target's invariants,
over every payment of the pool.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from racebench.harness.target_file import TargetSpec
from racebench.harness.target_race import (
    REQUEST_TIMEOUT_S,
    Session,
    TargetPayment,
    TargetRace,
    running,
)
from racebench.loadtests.profiles import JSON_HEADERS, Call, Calls, ItemSource, Profile
from racebench.progress import Progress
from racebench.reference_service.strategies import holds
from racebench.results import DEFAULT_RUNS_DIR, Results, new_run_id

DEFAULT_POOL = 2000
# The reference target runs `racebench serve --workers 2`: what `holds` is asked with.
TARGET_PROCESSES = 2


@dataclass(frozen=True)
class TargetPool:
    """The pool's payments, made through the target's template (ids need not be contiguous)."""

    ids: tuple[int, ...]
    amount: int

    def at(self, k: int) -> tuple[int, bool]:
        return self.ids[k % len(self.ids)], k >= len(self.ids)


class TargetCalls(Calls):
    """The profiles' calls, built as the target file says."""

    def __init__(self, race: TargetRace, payments: dict[int, TargetPayment], prefix: str) -> None:
        self.race = race
        self.payments = payments
        self.prefix = prefix

    def verify(self, payment_id: int) -> Call:
        request = self.race.verify("load", self.payments[payment_id])
        body = json.dumps(request.json_body, separators=(",", ":")).encode()
        return Call("verify", request.path, body, JSON_HEADERS, payment_id)

    def webhook(self, payment_id: int, event_type: str, event_id: str) -> Call:
        payment = self.payments[payment_id]
        delivery = self.race.gateway.event(
            event_type,
            order_id=payment.order_id,
            amount=payment.amount,
            payment_id=self.race._gateway_payment_id(payment),
            event_id=f"evt_{self.prefix}_{event_id}",
        )
        return Call(
            "webhook",
            self.race.spec.webhook_path,
            delivery.body,
            delivery.headers(),
            payment_id,
            delivery.event_id,
        )


@dataclass
class TargetBench:
    """One profile's load on one target (under one strategy, for a target that takes one)."""

    target: str
    strategy: str | None
    profile: str
    users: int
    duration_s: float
    pool: int
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    violations: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def expected_to_hold(self) -> bool:
        return holds(self.strategy or self.target, TARGET_PROCESSES)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "strategy": self.strategy,
            "profile": self.profile,
            "users": self.users,
            "duration_s": self.duration_s,
            "pool": self.pool,
            "requests": self.requests,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "statuses": self.statuses,
            "violations": self.violations,
            "expected_to_hold": self.expected_to_hold,
            "errors": self.errors[:20],
        }


async def _load(
    spec: TargetSpec,
    profile: Profile,
    bench: TargetBench,
    strategy: str | None,
    progress: Progress[TargetBench] | None,
) -> None:
    with running(spec, strategy) as target:
        async with Session.open(target, use_barrier=False) as session:
            race = TargetRace(session)
            if progress is not None:
                progress.phase("making the pool of payments")
            payments: dict[int, TargetPayment] = {}
            for _ in range(bench.pool):
                payment = await race.payment()
                payments[payment.id] = payment
            pool = TargetPool(tuple(payments), 100_000)
            source = ItemSource(profile, pool)  # type: ignore[arg-type]
            source.calls = TargetCalls(race, payments, session.run_prefix)
            if progress is not None:
                progress.phase(f"{profile.name} load, {bench.users} users")
            statuses: Counter[str] = Counter()
            deadline = time.monotonic() + bench.duration_s

            async def user() -> None:
                async with httpx.AsyncClient(
                    base_url=target.base_url, timeout=REQUEST_TIMEOUT_S
                ) as client:
                    while time.monotonic() < deadline:
                        item = source.next_item()
                        await asyncio.gather(*(send(client, call) for call in item))

            async def send(client: httpx.AsyncClient, call: Call) -> None:
                started = time.perf_counter()
                try:
                    response = await client.post(call.path, content=call.body, headers=call.headers)
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                bench.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                bench.requests += 1

            async def tick() -> None:
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    if progress is not None:
                        left = max(0.0, deadline - time.monotonic())
                        progress.advanced(bench.duration_s - left, bench.duration_s)

            await asyncio.gather(tick(), *(user() for _ in range(bench.users)))
            bench.statuses = dict(statuses)
            race.payment_ids = list(payments)
            check = await race.check()
            bench.violations = dict(check.counts)
            bench.errors = race.errors


def run_target_bench(
    spec: TargetSpec,
    *,
    profile: Profile,
    strategies: list[str | None],
    users: int,
    duration_s: float,
    pool: int = DEFAULT_POOL,
    out: Path | None = None,
    progress: Progress[TargetBench] | None = None,
) -> tuple[list[TargetBench], Path, int]:
    """Each strategy (or the target as it is: [None]) under `profile`; (benches, results
    path, exit code: 1 if one expected to hold left a violation or answered a 5xx)."""
    run_id = new_run_id("bench")
    benches: list[TargetBench] = []
    for i, strategy in enumerate(strategies, start=1):
        bench = TargetBench(spec.name, strategy, profile.name, users, duration_s, pool)
        if progress is not None:
            progress.started(f"{spec.name} {strategy or ''} {profile.name}", i, len(strategies))
        asyncio.run(_load(spec, profile, bench, strategy, progress))
        benches.append(bench)
        if progress is not None:
            progress.finished(bench)
    results = Results(run_id=run_id)
    results.environment["target_bench"] = [b.to_json() for b in benches]
    path = results.write(out or DEFAULT_RUNS_DIR / run_id)
    failed = any(
        (b.expected_to_hold and b.violations)
        or any(s.startswith("5") for s in b.statuses)
        or b.errors
        for b in benches
    )
    return benches, path, 1 if failed else 0
