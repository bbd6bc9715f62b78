"""What a bench loads: racebench's reference service, or a target (someone else's service,
described by a target file). The bench's machinery (rounds, orders, Locust, CPU, the check after
each round) is the same for both; a `System` says, at each step, what is particular to it:

- the service an arm runs (`racebench serve --strategy S`, or the target's command for a
  variant), and whether the arm is expected to hold;
- where its data lives: a database racebench makes for each arm (the reference service; a
  target whose [database].url is "{database_url}"), or the target's own, shared by its arms;
- how a round's payments are made (the reference's ids seeded in bulk; a target's made through
  its template, one file of their values for Locust), and the requests Locust sends for them;
- what is checked after a round, and what Locust is told on its command line.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from racebench.harness.database import ProvisionedDatabase, parse_url, provision, run_sync
from racebench.harness.invariants import CheckResult, check, lost_captures
from racebench.harness.processes import ServiceSpec
from racebench.harness.service_process import ServeSpec
from racebench.harness.target import load as target_load
from racebench.harness.target.file import LEDGER_CODE, TargetSpec
from racebench.harness.target.matrix import variant_arg
from racebench.harness.target.service import service_spec
from racebench.loadtests.pool import Pool, seed
from racebench.loadtests.profiles import Calls, CallSource
from racebench.loadtests.tally import Tally
from racebench.reference_service.config import APPLICATION_NAME
from racebench.reference_service.strategies import holds

WARMUP_CONCURRENCY = 16
# A warm-up request answers in milliseconds; this only bounds a stuck service.
WARMUP_TIMEOUT_S = 30.0
POOL_FILE = "pool.jsonl"  # a target round's payments, beside its tallies
# The most work items per second a pool is made for. The reference service on this 2-core
# machine does well under half of this (a faster machine that runs out only reuses payments,
# and says so), and its pool is seeded in bulk; a target's payments are made one by one through
# its template, so a first round plans for fewer (later rounds: twice the rate measured).
POOL_ITEMS_PER_S = 3_000
TARGET_ITEMS_PER_S = 1_000


@dataclass(frozen=True)
class RoundCheck:
    """What the invariants found after a round, and the ledger's two counts."""

    result: CheckResult
    lost_captures: int  # payments answered 2xx for a capture that are not captured
    lost_webhooks: int  # webhook deliveries answered 2xx that were not kept


class System(Protocol):
    """The system under a bench's load (the reference service, or a target)."""

    @property
    def name(self) -> str: ...
    @property
    def seeds_with_service(self) -> bool:
        """Whether making payments needs the service up (else they are seeded as it boots)."""
        ...

    @property
    def application_name(self) -> str | None:
        """The service's backends' application_name, if known (--faults kills them)."""
        ...

    @property
    def items_per_s(self) -> float:
        """The most work items a second a first round's pool is made for (later rounds: twice
        the rate measured); payments made one by one are made for fewer."""
        ...

    @property
    def own_databases(self) -> bool:
        """racebench makes a database for each arm (else they share the target's)."""
        ...

    def shared_database(self) -> str: ...
    def service(self, arm: str, database_url: str, workers: int, log_path: Path) -> ServiceSpec: ...
    def expected_safe(self, arm: str, workers: int) -> bool: ...
    def seed(self, database_url: str, base_url: str, pools: Sequence[Pool], folder: Path) -> None:
        """Make the payments of `pools` (for the service at `base_url`, on `database_url`);
        what Locust needs to address them goes into `folder`."""
        ...

    def calls(self, pool: Pool, folder: Path) -> CallSource: ...
    def locust_options(self, pool_folder: Path | None) -> list[str]:
        """Locust's options for this system (and, with one arm, where its payments are)."""
        ...

    def arm_options(self, folder: Path) -> dict[str, str]:
        """An arm's entry of RACEBENCH_ARMS, beyond its label, URL and tally folder."""
        ...

    def check(
        self, database_url: str, pools: Sequence[Pool], tally: Tally, folder: Path
    ) -> RoundCheck: ...


class ReferenceSystem:
    """racebench's own service, one `racebench serve` per arm, on a database of its own."""

    name = "the reference service"
    own_databases = True
    items_per_s = POOL_ITEMS_PER_S
    application_name: str | None = APPLICATION_NAME
    seeds_with_service = False  # SQL on its tables, which exist once it has started once

    def shared_database(self) -> str:
        raise RuntimeError("the reference service gets a database of its own for each arm")

    def service(self, arm: str, database_url: str, workers: int, log_path: Path) -> ServiceSpec:
        return ServeSpec(arm, database_url, workers, log_path=log_path).service()

    def expected_safe(self, arm: str, workers: int) -> bool:
        return holds(arm, workers)

    def seed(self, database_url: str, base_url: str, pools: Sequence[Pool], folder: Path) -> None:
        seed(database_url, *pools)

    def calls(self, pool: Pool, folder: Path) -> CallSource:
        return Calls(pool)

    def locust_options(self, pool_folder: Path | None) -> list[str]:
        return []

    def arm_options(self, folder: Path) -> dict[str, str]:
        return {}

    def check(
        self, database_url: str, pools: Sequence[Pool], tally: Tally, folder: Path
    ) -> RoundCheck:
        result = run_sync(check(database_url, acknowledged_event_ids=tally.acked_event_ids))
        lost = run_sync(lost_captures(database_url, tally.acked_payment_ids))
        return RoundCheck(result, lost, result.counts.get("WEBHOOK_LOST", 0))


@dataclass
class TargetSystem:
    """A target: its service under each variant, its payments made through its template."""

    spec: TargetSpec
    prefix: str = field(default_factory=lambda: f"b{secrets.token_hex(3)}")
    payments: dict[Path, dict[int, dict[str, Any]]] = field(default_factory=dict)

    items_per_s: float = TARGET_ITEMS_PER_S
    application_name: str | None = None  # unknown: its backends are every one of its database

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def seeds_with_service(self) -> bool:
        """[payment.http] needs the service up; [payment].sql, only its tables."""
        return self.spec.payment.http is not None

    @property
    def own_databases(self) -> bool:
        return self.spec.owns_database

    def shared_database(self) -> str:
        return self.spec.database_url

    def service(self, arm: str, database_url: str, workers: int, log_path: Path) -> ServiceSpec:
        variant = self.spec.variant(variant_arg(self.spec, self.spec.variant(arm)))
        return service_spec(self.spec, variant, database_url, workers=workers, log_path=log_path)

    def expected_safe(self, arm: str, workers: int) -> bool:
        return not self.spec.variant(arm).canary

    def seed(self, database_url: str, base_url: str, pools: Sequence[Pool], folder: Path) -> None:
        indices = [i for pool in pools for i in range(pool.first, pool.last + 1)]
        made = run_sync(
            target_load.make_payments(
                self.spec,
                database_url,
                base_url,
                len(indices),
                prefix=f"{self.prefix}{secrets.token_hex(2)}",
            )
        )
        by_index = dict(zip(indices, made, strict=True))
        self.payments[folder] = by_index
        target_load.write_pool(folder / POOL_FILE, [{"index": i, **v} for i, v in by_index.items()])

    def calls(self, pool: Pool, folder: Path) -> CallSource:
        return target_load.TargetCalls(self.spec, self.payments[folder])

    def locust_options(self, pool_folder: Path | None) -> list[str]:
        options = ["--target-file", str(self.spec.path)]
        if pool_folder is not None:
            options += ["--target-pool", str(pool_folder / POOL_FILE)]
        return options

    def arm_options(self, folder: Path) -> dict[str, str]:
        return {"pool_file": str(folder / POOL_FILE)}

    def check(
        self, database_url: str, pools: Sequence[Pool], tally: Tally, folder: Path
    ) -> RoundCheck:
        ids = [int(v["payment_id"]) for v in self.payments.pop(folder, {}).values()]
        result = run_sync(
            target_load.check_round(
                self.spec, database_url, ids, tally.acked_event_ids, tally.acked_payment_ids
            )
        )
        return RoundCheck(
            result, result.counts.get(LEDGER_CODE, 0), result.counts.get("WEBHOOK_LOST", 0)
        )


@contextmanager
def arm_database(
    system: System, server_url: str | None, *, restartable: bool = False
) -> Iterator[ProvisionedDatabase]:
    """The database an arm's service runs on: a fresh one racebench makes (on `server_url`'s
    server; `restartable`: an embedded server of its own), or the target's, shared."""
    if system.own_databases:
        with provision(server_url, owned=restartable) as database:
            yield database
        return
    url = system.shared_database()
    yield ProvisionedDatabase(url, parse_url(url).database or "", embedded=False)


def warm_up_all(
    system: System,
    base_urls: Sequence[str],
    pool: Pool,
    folders: Sequence[Path],
    concurrency: int = WARMUP_CONCURRENCY,
) -> None:
    """Warm every service at once, each with a verify of every payment of `pool` (in its own
    database: `folders` say where each one's payments are)."""

    async def all_of_them() -> None:
        await asyncio.gather(
            *(
                _warm_up(url, system.calls(pool, folder), pool, concurrency)
                for url, folder in zip(base_urls, folders, strict=True)
            )
        )

    run_sync(all_of_them())


async def _warm_up(base_url: str, calls: CallSource, pool: Pool, concurrency: int) -> None:
    ids = iter(range(pool.first, pool.last + 1))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=WARMUP_TIMEOUT_S, limits=limits
    ) as client:

        async def worker() -> None:
            for payment_id in ids:
                call = calls.verify(payment_id)
                await client.post(call.path, content=call.body, headers=call.headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
