"""`bench --order concurrent`: every arm at the same time, driven by one Locust run.

Each arm (a strategy under a label) runs on a database of its own with a service of its own,
set up once for the whole bench and kept warm across its rounds. A round is one Locust run
whose users are split evenly among the arms (loadtests/locustfile.py, RACEBENCH_ARMS): one load
generator, one scheduler and one CPU budget feed every arm, so the machine's noise, and the
generator's own, falls on all of them alike and the per-round ratio B / A is steady.

The arms also take turns on the databases (slots): with up to MAX_CROSSED_ARMS arms, every arm
has a service on every slot, and round r puts arm i on slot (i + r) mod n. Whatever belongs to
a slot (a database created first, a service process the kernel keeps on a busier core) then
falls on every arm in turn; without the turns, an A/A bench found its second arm 1.6% faster
(0.2..3.0%) in 28 rounds. Before each round, every slot's database gets a fresh slice of
pending payments; after it, each arm gets one row, counted like a cell of loadtests/cell.py:
its requests, its CPU (its service and its slot's backends), and the violations and incidents
its round added to its slot.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from racebench.harness.database import connect, parse_url, provision, run_sync
from racebench.harness.invariants import check, lost_captures
from racebench.harness.service_process import running_service
from racebench.loadtests.cell import (
    CPU_WARNING,
    NOBODY,
    RESULT_FILE,
    WARMUP_CONCURRENCY,
    bench_row,
    run_locust,
    warm_up,
)
from racebench.loadtests.config import LOCUST_STARTUP_ALLOWANCE_S, POOL_ITEMS_PER_S, BenchConfig
from racebench.loadtests.locust_run import JSON_STEM, LocustPlan
from racebench.loadtests.pool import Pool, seed
from racebench.loadtests.profiles import pool_size_for, requests_per_item
from racebench.loadtests.tally import TALLY_GLOB, merge_tallies, read_tallies
from racebench.progress import Progress
from racebench.results import BenchResult, CpuFigures, CpuGroup, Incidents

# The uncounted round before the first: long enough to start Locust and warm every arm.
WARMUP_ROUND_S = 3.0
# Up to this many arms take turns on the databases (n arms start n * n services).
MAX_CROSSED_ARMS = 3
ARMS_ENV = "RACEBENCH_ARMS"  # read by the locustfile at import (see its ARMS)


@dataclass
class _Slot:
    """A database the arms take turns on, and what its invariants found so far."""

    url: str
    name: str
    counted: dict[str, int] = field(default_factory=dict)  # violations before this round
    incidents: Incidents | None = None  # and the incidents


@dataclass
class _Arm:
    label: str
    strategy: str
    services: dict[int, tuple[str, int]] = field(default_factory=dict)  # slot -> (url, pid)


@dataclass
class PairedBench:
    """The arms of a concurrent bench, set up once; `round()` runs one round of all of them."""

    config: BenchConfig
    arms: list[_Arm]
    slots: list[_Slot]
    progress: Progress[BenchResult] = NOBODY
    _next_payment: int = 1  # the first payment id of the next slice
    _rate: float = 0.0  # requests per second of the busiest arm in the last round

    @property
    def crossed(self) -> bool:
        """Whether the arms take turns on the slots (every arm has a service on each)."""
        return len(self.arms) <= MAX_CROSSED_ARMS

    def placement(self, round_no: int) -> list[tuple[_Arm, int]]:
        """Each arm with the slot it runs on in round `round_no`."""
        n = len(self.arms)
        shift = round_no % n if self.crossed else 0
        return [(arm, (i + shift) % n) for i, arm in enumerate(self.arms)]

    def start_order(self) -> list[tuple[_Arm, int]]:
        """Every (arm, slot) service, in the order they start and warm up: the pairs that run
        together, in turn, each second pair in reverse, so that no arm's services are always
        the older or the more recently warmed (with two arms: A1 B2, then B1 A2)."""
        if not self.crossed:
            return self.placement(0)
        order = []
        for shift in range(len(self.arms)):
            pairs = self.placement(shift)
            order += pairs if shift % 2 == 0 else pairs[::-1]
        return order

    @classmethod
    @contextmanager
    def open(
        cls, config: BenchConfig, progress: Progress[BenchResult] = NOBODY
    ) -> Iterator[PairedBench]:
        """Every slot's database and every arm's services, warmed up; all stopped and dropped
        on exit."""
        arms = [
            _Arm(label, strategy)
            for label, strategy in zip(config.labels, config.strategies, strict=True)
        ]
        log_dir = config.run_dir.resolve() / "services"
        log_dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            slots: list[_Slot] = []
            for _ in arms:
                progress.phase(f"database {len(slots) + 1} of {len(arms)}")
                database = stack.enter_context(provision(config.database_url))
                slots.append(_Slot(database.url, database.name))
            bench = cls(config, arms, slots, progress)
            for arm, s in bench.start_order():
                slot = slots[s]
                progress.phase(f"{arm.label}: service on database {s + 1}")
                name = f"{arm.label.replace(':', '-')}-db{s + 1}.log"
                service = stack.enter_context(
                    running_service(
                        strategy=arm.strategy,
                        database_url=slot.url,
                        workers=config.workers,
                        log_path=log_dir / name,
                    )
                )
                arm.services[s] = (service.base_url, service.pid)
            for slot in slots:
                run_sync(_no_autovacuum(slot.url))
            for arm, s in bench.start_order():  # each warms up on payments of its own
                progress.phase(f"{arm.label}: warm-up on database {s + 1}")
                warmup = Pool(bench._next_payment, config.warmup_requests)
                bench._next_payment = warmup.last + 1
                seed(slots[s].url, warmup)
                warm_up(arm.services[s][0], warmup, WARMUP_CONCURRENCY)
            yield bench

    def pool(self, duration_s: float) -> Pool:
        """The next round's payments: a slice of its own, after the ones before it. The first
        round's is sized for the most a round could send; later ones for twice the rate of the
        busiest arm in the round before (nothing is reused, and the tables grow no faster than
        the load needs)."""
        config = self.config
        items_per_s: float = POOL_ITEMS_PER_S
        if self._rate:
            items_per_s = min(items_per_s, 2 * self._rate / requests_per_item(config.profile))
        seconds = duration_s + LOCUST_STARTUP_ALLOWANCE_S
        size = pool_size_for(config.profile, items=items_per_s * seconds, duration_s=seconds)
        return Pool(self._next_payment, size)

    def round(self, round_no: int, duration_s: float | None = None) -> list[BenchResult]:
        """One Locust run over every arm (of the config's duration, unless given); one result
        per arm."""
        config = self.config
        if duration_s is not None:
            config = replace(config, duration_s=duration_s)
        pool = self.pool(config.duration_s)
        self._next_payment = pool.last + 1
        self.progress.phase("seeding")
        for slot in self.slots:
            seed(slot.url, pool)
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
            hot_epoch=time.time(),
        )
        # Locust spawns the user classes in the order given: every second round reverses it,
        # so that neither arm is always first.
        order = placement if round_no % 2 else placement[::-1]
        arms_env = [
            {"label": arm.label, "url": arm.services[s][0], "tally_dir": str(dirs[arm.label])}
            for arm, s in order
        ]
        self.progress.phase("load")
        returncode, cpu = self._run_locust(plan, arms_env, placement)
        log = (shared / "locust.log").read_text(errors="replace")
        results = [
            self._result(
                config, arm, self.slots[s], round_no, pool, dirs[arm.label], returncode, cpu, log
            )
            for arm, s in placement
        ]
        self._rate = max(result.throughput_rps for result in results)
        return results

    def _run_locust(
        self,
        plan: LocustPlan,
        arms_env: list[dict[str, str]],
        placement: list[tuple[_Arm, int]],
    ) -> tuple[int, dict[str, CpuFigures]]:
        services, matching = {}, {}
        for arm, slot in placement:
            services[f"service {arm.label}"] = arm.services[slot][1]
            # The slot's backends: the idle services on it hold connections that do nothing.
            matching[f"postgres {arm.label}"] = f" {self.slots[slot].name} "
        returncode, figures, _ = run_locust(
            plan,
            plan.tally_dir,
            self.progress,
            services=services,
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
        self.progress.phase("invariants")
        tally = merge_tallies(read_tallies(folder))
        outcome = run_sync(check(slot.url, acknowledged_event_ids=tally.acked_event_ids))
        lost = run_sync(lost_captures(slot.url, tally.acked_payment_ids))
        # The slot holds every round so far: this round's violations are the new ones.
        counts = dict(outcome.counts)
        added = {code: n - slot.counted.get(code, 0) for code, n in counts.items()}
        slot.counted = counts
        added = {code: n for code, n in added.items() if n}
        incidents = _since(outcome.incidents, slot.incidents)
        slot.incidents = outcome.incidents
        arms = len(self.arms)
        share = replace(  # the arm's even share of the users and of an open model's rate
            config,
            users=max(1, config.users // arms),
            rate=None if config.rate is None else config.rate / arms,
        )
        result = bench_row(
            share,
            tally,
            strategy=arm.strategy,
            label=arm.label,
            round_no=round_no,
            pool=pool,
            returncode=returncode,
            cpu=cpu[arm.label],
            cpu_warning=CPU_WARNING in log,
            violations=added,
            incidents=incidents,
            lost=lost,
        )
        (folder / RESULT_FILE).write_text(result.model_dump_json(indent=2))
        return result


async def _no_autovacuum(database_url: str) -> None:
    """Autovacuum off on the arm's tables. Its workers wake at times of their own, on one
    arm's database and not the other's, and would land in that arm's CPU (a backend's process
    title names its database). Every seed ends with ANALYZE, so the planner still knows the
    tables; the bench's databases are dropped at the end."""
    conn = await connect(parse_url(database_url))
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
        )
        for table in tables:
            await conn.execute(f"ALTER TABLE {table['name']} SET (autovacuum_enabled = false)")
    finally:
        await conn.close()


def _since(now: Incidents | None, before: Incidents | None) -> Incidents | None:
    """The incidents of the last round: every round has payments and invoices of its own, so
    the counts after it less the counts before it."""
    if now is None or before is None:
        return now
    at_risk = {c: m - before.at_risk.get(c, 0) for c, m in now.at_risk.items()}
    return Incidents(
        payments=now.payments - before.payments,
        captured_twice=now.captured_twice - before.captured_twice,
        invoices=now.invoices - before.invoices,
        at_risk={c: m for c, m in at_risk.items() if m},
        unattributed=now.unattributed - before.unattributed,
    )


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
