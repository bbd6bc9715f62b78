"""`bench --order concurrent`: every arm at the same time, driven by one Locust run.

Each arm (a strategy under a label) runs on a database of its own, one of the bench's slots,
set up once for the whole bench. A round is one Locust run whose users are split evenly among
the arms (loadtests/locustfile.py, RACEBENCH_ARMS): one load generator, one scheduler and one
CPU budget feed every arm, so the machine's noise, and the generator's own, falls on all of
them alike and the per-round ratio B / A is steady.

Every round starts a fresh service for each arm, and the arms take turns on the slots: round r
puts arm i on slot (i + r) mod n. Whatever belongs to a slot (a database created first, its
place on disk) falls on every arm in turn. A service process keeps what it was born with for
life (its memory layout, its hash seed, the core the kernel favours): kept for the whole bench,
that is a fixed offset on one side that no number of rounds averages out and that no interval
shows (with services kept warm across rounds, six A/A benches all found the second arm ahead,
by up to 2.4%). Started fresh every round, it is round-to-round noise, inside the interval.
Before each round, every slot gets fresh slices of pending payments, the warm-up's and the
round's; after it, each arm gets one row, counted like a cell of loadtests/cell.py: its
requests, its CPU (its service and its slot's backends), and the violations and incidents its
invariants found. Then the slot's tables are emptied, so that every round runs on tables of
the same size and its checks read its own rows alone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg

from racebench.harness.database import connect, parse_url, run_sync
from racebench.harness.processes import RunningService, ServiceSpec, running_services
from racebench.loadtests.cell import (
    CPU_WARNING,
    NOBODY,
    RESULT_FILE,
    bench_row,
    run_locust,
)
from racebench.loadtests.config import LOCUST_STARTUP_ALLOWANCE_S, BenchConfig
from racebench.loadtests.locust_run import JSON_STEM, LocustPlan
from racebench.loadtests.pool import Pool
from racebench.loadtests.profiles import pool_size_for, requests_per_item
from racebench.loadtests.system import arm_database, warm_up_all
from racebench.loadtests.tally import TALLY_GLOB
from racebench.progress import Progress
from racebench.results import BenchResult, CpuFigures, CpuGroup

# The uncounted round before the first: long enough to start Locust and warm every arm.
WARMUP_ROUND_S = 3.0
# A round's fresh services each verify this many payments before the load: enough to open
# their connection pools and prime their statement caches (the first Locust start, cold tables
# and the like are the uncounted round 0's).
ROUND_WARMUP_REQUESTS = 100
ARMS_ENV = "RACEBENCH_ARMS"  # read by the locustfile at import (see its ARMS)


@dataclass
class _Slot:
    """A database the arms take turns on."""

    url: str
    name: str
    tuned: bool = False  # autovacuum is off on its tables (they exist once a service started)


@dataclass(frozen=True)
class _Arm:
    label: str
    strategy: str


@dataclass
class PairedBench:
    """The arms of a concurrent bench, set up once; `round()` runs one round of all of them."""

    config: BenchConfig
    arms: list[_Arm]
    slots: list[_Slot]
    progress: Progress[BenchResult] = NOBODY
    _next_payment: int = 1  # the first payment id of the next slice
    _rate: float = 0.0  # requests per second of the busiest arm in the last round

    def placement(self, round_no: int) -> list[tuple[_Arm, int]]:
        """Each arm with the slot it runs on in round `round_no`."""
        n = len(self.arms)
        return [(arm, (i + round_no) % n) for i, arm in enumerate(self.arms)]

    @classmethod
    @contextmanager
    def open(
        cls, config: BenchConfig, progress: Progress[BenchResult] = NOBODY
    ) -> Iterator[PairedBench]:
        """Every slot's database; all dropped on exit."""
        arms = [
            _Arm(label, strategy)
            for label, strategy in zip(config.labels, config.strategies, strict=True)
        ]
        with ExitStack() as stack:
            slots: list[_Slot] = []
            for _ in arms:
                progress.phase(f"database {len(slots) + 1} of {len(arms)}")
                database = stack.enter_context(arm_database(config.system, config.database_url))
                slots.append(_Slot(database.url, database.name))
            yield cls(config, arms, slots, progress)

    def pool(self, duration_s: float, first: int) -> Pool:
        """The next round's payments, from id `first`: a slice of its own. The first
        round's is sized for the most a round could send; later ones for twice the rate of the
        busiest arm in the round before (nothing is reused, and seeding takes no longer than
        the load needs)."""
        config = self.config
        items_per_s: float = config.system.items_per_s
        if self._rate:
            items_per_s = min(items_per_s, 2 * self._rate / requests_per_item(config.profile))
        seconds = duration_s + LOCUST_STARTUP_ALLOWANCE_S
        size = pool_size_for(config.profile, items=items_per_s * seconds, duration_s=seconds)
        return Pool(first, size)

    def round(self, round_no: int, duration_s: float | None = None) -> list[BenchResult]:
        """One Locust run over every arm (of the config's duration, unless given); one result
        per arm."""
        config = self.config
        if duration_s is not None:
            config = replace(config, duration_s=duration_s)
        warmup = Pool(self._next_payment, min(config.warmup_requests, ROUND_WARMUP_REQUESTS))
        pool = self.pool(config.duration_s, first=warmup.last + 1)
        self._next_payment = pool.last + 1
        placement = self.placement(round_no)
        run_dir = config.run_dir.resolve() / "cells"
        dirs = {
            arm.label: run_dir / f"r{round_no}-{arm.label.replace(':', '-')}" for arm in self.arms
        }
        for folder in dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
            for stale in (*folder.glob(TALLY_GLOB), folder / f"{JSON_STEM}.json"):
                stale.unlink(missing_ok=True)
        shared = run_dir / f"r{round_no}-locust"
        shared.mkdir(parents=True, exist_ok=True)
        plan = LocustPlan(
            base_url=None,  # each arm's user class has its own host
            profile=config.profile,
            pool=pool,
            users=config.users,
            duration_s=config.duration_s,
            processes=config.processes,
            tally_dir=shared,
            rate=config.item_rate,
            extra=tuple(config.system.locust_options(None)),
        )
        # Services start, and Locust spawns the user classes, in the order given: every second
        # round reverses it, so that neither arm is always first.
        order = placement if round_no % 2 else placement[::-1]
        system = config.system
        # Seeding needs the tables, which the first services create: after round 0 the
        # reference service's runs while the services boot (the executor's exit waits for it,
        # however the round ends); a target's payments may need its service (its template is
        # free to make them over HTTP), so they are made once it is up.
        self.progress.phase("services")
        early = [s for _, s in placement if self.slots[s].tuned and not system.seeds_with_service]
        with ExitStack() as stack:
            seeder = stack.enter_context(ThreadPoolExecutor(1))
            seeding = seeder.submit(
                self._seed,
                [(self.slots[s], "", dirs[a.label]) for a, s in placement if s in early],
                warmup,
                pool,
            )
            specs = [self._spec(arm, s, round_no) for arm, s in order]
            started = stack.enter_context(running_services(specs))
            services = {arm.label: svc for (arm, _), svc in zip(order, started, strict=True)}
            seeding.result()
            if any(not slot.tuned for slot in self.slots):
                self._tune()
            self.progress.phase("seeding")
            self._seed(
                [
                    (self.slots[s], services[a.label].base_url, dirs[a.label])
                    for a, s in placement
                    if s not in early
                ],
                warmup,
                pool,
            )
            self.progress.phase("warm-up")
            warm_up_all(
                system,
                [services[arm.label].base_url for arm, _ in order],
                warmup,
                [dirs[arm.label] for arm, _ in order],
            )
            arms_env = [
                {
                    "label": arm.label,
                    "url": services[arm.label].base_url,
                    "tally_dir": str(dirs[arm.label]),
                    **system.arm_options(dirs[arm.label]),
                }
                for arm, _ in order
            ]
            self.progress.phase("load")
            # hot_row's hot set moves from this moment: the load's, after boot and warm-up.
            plan = replace(plan, hot_epoch=time.time())
            returncode, cpu = self._run_locust(plan, arms_env, placement, services)
        log = (shared / "locust.log").read_text(errors="replace")
        # Each arm's invariants on its own database, side by side (then its tables emptied).
        self.progress.phase("invariants")

        def result_of(pair: tuple[_Arm, int]) -> BenchResult:
            arm, s = pair
            slot, folder = self.slots[s], dirs[arm.label]
            return self._result(config, arm, slot, round_no, pool, folder, returncode, cpu, log)

        with ThreadPoolExecutor(len(placement)) as checks:
            results = list(checks.map(result_of, placement))
        self._rate = max(result.throughput_rps for result in results)
        return results

    def _seed(self, slots: list[tuple[_Slot, str, Path]], warmup: Pool, pool: Pool) -> None:
        """Each (slot, its service's URL, its arm's folder) gets the round's payments."""
        for slot, base_url, folder in slots:
            self.config.system.seed(slot.url, base_url, (pool, warmup), folder)

    def _tune(self) -> None:
        """Autovacuum off on the arms' tables, once they exist (a database racebench made)."""
        for slot in self.slots:
            if self.config.system.own_databases and not slot.tuned:
                run_sync(_no_autovacuum(slot.url))
            slot.tuned = True

    def _spec(self, arm: _Arm, slot: int, round_no: int) -> ServiceSpec:
        """Arm `arm`'s fresh service on slot `slot` for round `round_no`, logged beside the
        others."""
        log_dir = self.config.run_dir.resolve() / "services"
        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"r{round_no}-{arm.label.replace(':', '-')}-db{slot + 1}.log"
        return self.config.system.service(
            arm.strategy, self.slots[slot].url, self.config.workers, log_dir / name
        )

    def _run_locust(
        self,
        plan: LocustPlan,
        arms_env: list[dict[str, str]],
        placement: list[tuple[_Arm, int]],
        services: dict[str, RunningService],
    ) -> tuple[int, dict[str, CpuFigures]]:
        pids, matching = {}, {}
        for arm, slot in placement:
            pids[f"service {arm.label}"] = services[arm.label].pid
            if self.config.system.own_databases:  # its backends' titles name its database
                matching[f"postgres {arm.label}"] = f" {self.slots[slot].name} "
        returncode, figures, _ = run_locust(
            plan,
            plan.tally_dir,
            self.progress,
            services=pids,
            matching=matching,
            env={**os.environ, ARMS_ENV: json.dumps(arms_env)},
        )
        return returncode, {arm.label: _arm_cpu(figures, arm.label) for arm in self.arms}

    def _result(
        self,
        config: BenchConfig,
        arm: _Arm,
        slot: _Slot,
        round_no: int,
        pool: Pool,
        folder: Path,
        returncode: int,
        cpu: dict[str, CpuFigures],
        log: str,
    ) -> BenchResult:
        arms = len(self.arms)
        share = replace(  # the arm's even share of the users and of an open model's rate
            config,
            users=max(1, config.users // arms),
            rate=None if config.rate is None else config.rate / arms,
        )
        result = bench_row(
            share,
            folder,
            slot.url,
            strategy=arm.strategy,
            label=arm.label,
            round_no=round_no,
            pools=(pool,),
            returncode=returncode,
            cpu=cpu[arm.label],
            cpu_warning=CPU_WARNING in log,
        )
        # Counted: the next round starts on empty tables (its checks read its rows alone, and
        # every round runs on tables of the same size); a target's own database is not ours.
        if self.config.system.own_databases:
            run_sync(_emptied(slot.url))
        (folder / RESULT_FILE).write_text(result.model_dump_json(indent=2))
        return result


async def _no_autovacuum(database_url: str) -> None:
    """Autovacuum off on the arm's tables. Its workers wake at times of their own, on one
    arm's database and not the other's, and would land in that arm's CPU (a backend's process
    title names its database). Every seed ends with ANALYZE, so the planner still knows the
    tables; the bench's databases are dropped at the end."""
    conn = await connect(parse_url(database_url))
    try:
        for table in await _tables(conn):
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    finally:
        await conn.close()


async def _emptied(database_url: str) -> None:
    """Every table of the arm's database emptied (a round's rows, once counted)."""
    conn = await connect(parse_url(database_url))
    try:
        await conn.execute(f"TRUNCATE {', '.join(await _tables(conn))}")
    finally:
        await conn.close()


async def _tables(conn: asyncpg.Connection) -> list[str]:
    """The service's tables (quoted), in the database `conn` is on."""
    rows = await conn.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
    )
    return [row["name"] for row in rows]


def _arm_cpu(figures: CpuFigures, label: str) -> CpuFigures:
    """One arm's view of a shared round: its service and backends, and the shared Locust."""
    mine = {"locust": "locust", f"service {label}": "service", f"postgres {label}": "postgres"}
    groups: dict[str, CpuGroup] = {
        mine[name]: group for name, group in figures.groups.items() if name in mine
    }
    return figures.model_copy(update={"groups": groups})


def run_paired(
    config: BenchConfig,
    progress: Progress[BenchResult] = NOBODY,
    on_result: Callable[[BenchResult], None] | None = None,
) -> list[BenchResult]:
    """Every round of a concurrent bench; one result per arm and round."""
    results: list[BenchResult] = []
    names = " + ".join(config.labels)
    progress.started(f"{names}: setting up", 0, config.cells)
    with PairedBench.open(config, progress) as bench:
        # A round that is not counted: the first round's figures stray from the rest (new
        # tables, cold caches, the first Locust start), and on one side of the pair only.
        progress.started(f"{names} warm-up round", 0, config.cells)
        bench.round(0, min(config.duration_s, WARMUP_ROUND_S))
        for round_no in range(1, config.rounds + 1):
            index = round_no * len(config.strategies)
            progress.started(f"{names} round {round_no}/{config.rounds}", index, config.cells)
            for result in bench.round(round_no):
                results.append(result)
                progress.finished(result)
                if on_result is not None:
                    on_result(result)
    return results
