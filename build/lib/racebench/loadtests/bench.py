"""`racebench bench`: every strategy under the same load, in alternating rounds, checked after.

One cell (a strategy in a round), in order:
1. a fresh database (harness.database.provision), dropped afterwards;
2. `racebench serve --strategy S --workers W` as a subprocess, awaited until healthy (it
   creates its tables);
3. the pool of pending payments, seeded in bulk with SQL;
4. a warm-up on payments of its own (connections opened, code paths warm);
5. Locust as a subprocess (`--processes P`), the CPU of Locust and the service sampled;
6. the service stopped, then the invariant queries run on what is left in the database,
   with every webhook event id that was answered 2xx (WEBHOOK_LOST).

Strategies alternate within each round (A B A B ...) so that machine drift hits them alike.
Ctrl-C (KeyboardInterrupt) unwinds every context: Locust's process group and the service's are
stopped, and the database dropped, before the exception leaves run_bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from racebench.harness.database import provision, run_sync
from racebench.harness.invariants import check
from racebench.harness.service_process import running_service, stop_process_group
from racebench.loadtests.ceiling import Ceiling, run_pgbench
from racebench.loadtests.cpu import CpuSampler
from racebench.loadtests.locust_run import JSON_STEM, LocustPlan, locust_figures
from racebench.loadtests.pool import Pool, seed
from racebench.loadtests.profiles import (
    Calls,
    Profile,
    parse_profile,
    pool_size_for,
    requests_per_item,
)
from racebench.loadtests.summary import AGGREGATE_ROUND, summarize
from racebench.loadtests.tally import TALLY_GLOB, merge_tallies, read_tallies
from racebench.reference_service.strategies import STRATEGIES, Safety
from racebench.results import DEFAULT_RUNS_DIR, BenchResult, Results, new_run_id

# The most work items per second we size a pool for. The service on this 2-core machine does
# well under half of this; a faster machine that runs out only reuses payments (and says so).
POOL_ITEMS_PER_S = 3_000
# Locust takes a second or two to start (more with --processes); hot_row's moving hot set and
# the pool must cover that too.
LOCUST_STARTUP_ALLOWANCE_S = 10.0
# Past its --run-time, Locust stops its users at once (--stop-timeout 0) and writes its files;
# if it is still running this long after, something is wrong and we stop it.
LOCUST_EXIT_GRACE_S = 60.0
# What Locust logs when one of its processes is CPU-bound.
CPU_WARNING = "CPU usage above"
# How often the progress display hears from a running Locust.
PROGRESS_TICK_S = 0.5
# Warm-up: enough requests to open the service's pooled connections and warm its code paths,
# few enough to cost a second or two.
WARMUP_REQUESTS = 300
WARMUP_CONCURRENCY = 16
# A warm-up request answers in milliseconds; this only bounds a stuck service.
WARMUP_TIMEOUT_S = 30.0


class BenchObserver(Protocol):
    """What the orchestrator tells whoever shows its progress (or a test)."""

    def cell_started(self, strategy: str, round_no: int, rounds: int) -> None: ...
    def phase(self, name: str) -> None: ...
    def load_progress(self, elapsed_s: float, duration_s: float) -> None: ...
    def cell_finished(self, result: BenchResult) -> None: ...


class QuietObserver:
    """Shows nothing."""

    def cell_started(self, strategy: str, round_no: int, rounds: int) -> None:
        pass

    def phase(self, name: str) -> None:
        pass

    def load_progress(self, elapsed_s: float, duration_s: float) -> None:
        pass

    def cell_finished(self, result: BenchResult) -> None:
        pass


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)?")


def parse_duration(text: str) -> float:
    """Seconds in '30s', '2m', '1m30s', '1h', '500ms' or a bare number of seconds."""
    text = text.strip().lower()
    position, total = 0, 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"not a duration: {text!r} (try 30s, 2m, 1m30s)")
        total += float(match.group(1)) * scale[match.group(2)]
        position = match.end()
    if total <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total


def parse_strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if text.strip() == "all":
        names = list(STRATEGIES)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise ValueError(
            f"unknown strategy {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(STRATEGIES)} (or all)"
        )
    return names


@dataclass(frozen=True)
class BenchConfig:
    strategies: list[str]
    profile: Profile
    users: int
    rate: float | None  # open model: requests per second
    duration_s: float
    rounds: int
    workers: int
    processes: int
    run_dir: Path
    database_url: str | None
    warmup_requests: int = WARMUP_REQUESTS

    @property
    def item_rate(self) -> float | None:
        """Open model: work items per second (a contention item is two requests)."""
        return None if self.rate is None else self.rate / requests_per_item(self.profile)

    def pools(self) -> tuple[Pool, Pool]:
        """(the measured run's pool, the warm-up's pool right after it)."""
        items_per_s = self.item_rate or POOL_ITEMS_PER_S
        seconds = self.duration_s + LOCUST_STARTUP_ALLOWANCE_S
        size = pool_size_for(self.profile, items=items_per_s * seconds, duration_s=seconds)
        pool = Pool(1, size)
        return pool, pool.after(self.warmup_requests)


def expects_safety(strategy: str, workers: int) -> bool:
    """Does this strategy promise no violations with this many service processes?"""
    safety = STRATEGIES[strategy].safety
    return safety is Safety.SAFE or (safety is Safety.SINGLE_PROCESS and workers == 1)


@dataclass
class CellRun:
    """One strategy in one round; `run()` returns its BenchResult."""

    config: BenchConfig
    strategy: str
    round_no: int
    observer: BenchObserver
    cell_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cell_dir = (
            self.config.run_dir.resolve() / "cells" / f"r{self.round_no}-{self.strategy}"
        )

    def run(self) -> BenchResult:
        config = self.config
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        for stale in (*self.cell_dir.glob(TALLY_GLOB), self.cell_dir / f"{JSON_STEM}.json"):
            stale.unlink(missing_ok=True)  # a reused --out folder must not add old requests
        pool, warmup_pool = config.pools()
        self.observer.phase("database")
        with provision(config.database_url) as database:
            self.observer.phase("service")
            with running_service(
                strategy=self.strategy,
                database_url=database.url,
                workers=config.workers,
                log_path=self.cell_dir / "service.log",
            ) as service:
                self.observer.phase("seeding")
                seed(database.url, pool, warmup_pool)
                self.observer.phase("warm-up")
                warm_up(service.base_url, warmup_pool, WARMUP_CONCURRENCY)
                self.observer.phase("load")
                plan = LocustPlan(
                    base_url=service.base_url,
                    profile=config.profile,
                    pool=pool,
                    users=config.users,
                    duration_s=config.duration_s,
                    processes=config.processes,
                    tally_dir=self.cell_dir,
                    rate=config.item_rate,
                    hot_epoch=time.time(),
                )
                returncode, cpu = self._run_locust(plan, service.pid, database.name)
            # The service is stopped: what is in the database now is all it will ever write.
            return self._result(database.url, pool, returncode, cpu)

    def _run_locust(
        self, plan: LocustPlan, service_pid: int, database_name: str
    ) -> tuple[int, dict[str, Any]]:
        log = (self.cell_dir / "locust.log").open("wb")
        process = subprocess.Popen(
            plan.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C here reaches it only through us
            cwd=self.cell_dir,  # Locust writes nothing relative; the cell is its home
        )
        sampler = CpuSampler(
            {"locust": process.pid, "service": service_pid},
            matching={"postgres": f" {database_name} "},  # its backends' process titles
        ).start()
        started = time.monotonic()
        deadline = started + plan.duration_s + LOCUST_STARTUP_ALLOWANCE_S + LOCUST_EXIT_GRACE_S
        try:
            while True:
                try:
                    returncode = process.wait(timeout=PROGRESS_TICK_S)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    self.observer.load_progress(now - started, plan.duration_s)
                    if now > deadline:
                        stop_process_group(process)
                        returncode = process.returncode
                        break
        finally:
            cpu = sampler.stop()
            stop_process_group(process)
            log.close()
        return returncode, cpu

    def _result(
        self, database_url: str, pool: Pool, returncode: int, cpu: dict[str, Any]
    ) -> BenchResult:
        config = self.config
        self.observer.phase("invariants")
        tally = merge_tallies(read_tallies(self.cell_dir))
        outcome = run_sync(check(database_url, acknowledged_event_ids=tally.acked_event_ids))
        extra: dict[str, Any] = {
            "busy": tally.busy,
            "outcomes": dict(sorted(tally.outcomes.items())),
            "locust_processes": tally.processes,
            "locust_returncode": returncode,
            "pool_size": pool.size,
            "pool_wrapped": tally.pool_wrapped,
            "acked_webhooks": len(tally.acked_event_ids),
            "cpu": cpu,
            "locust": locust_figures(self.cell_dir / f"{JSON_STEM}.json"),
            # Locust warns when one of its processes passes 90 % CPU (its own saturation check).
            "locust_cpu_warning": CPU_WARNING
            in (self.cell_dir / "locust.log").read_text(errors="replace"),
            "workers": config.workers,
            "expected_safe": expects_safety(self.strategy, config.workers),
            "model": "closed" if config.rate is None else "open",
        }
        extra["cpu_ms_per_request"] = cpu_ms_per_request(cpu, tally.throughput_rps)
        if tally.requests == 0:
            extra["error"] = f"Locust sent no requests (exit {returncode}); see locust.log"
        result = BenchResult(
            strategy=self.strategy,
            profile=config.profile.value,
            round=self.round_no,
            users=config.users,
            rate=config.rate,
            duration_s=round(tally.duration_s, 3),
            requests=tally.requests,
            failures=tally.failures,
            throughput_rps=round(tally.throughput_rps, 1),
            latency_ms=tally.latency.summary(),
            violations=dict(outcome.counts),
            extra=extra,
        )
        (self.cell_dir / "result.json").write_text(json.dumps(result.__dict__, default=_plain))
        return result


def cpu_ms_per_request(cpu: dict[str, Any], throughput_rps: float) -> float | None:
    """CPU time the system under test (service + its PostgreSQL backends) spent per request.

    On a machine shared with other work, throughput follows whatever CPU is left over; the CPU
    each request costs does much less, so it compares strategies more steadily.
    """
    if throughput_rps <= 0 or "service" not in cpu or "postgres" not in cpu:
        return None
    cores = cpu["service"]["total_cores"] + cpu["postgres"]["total_cores"]
    return round(1_000.0 * cores / throughput_rps, 4)


def _plain(value: Any) -> Any:
    return value.__dict__ if hasattr(value, "__dict__") else str(value)


def warm_up(base_url: str, pool: Pool, concurrency: int) -> None:
    """Verify every payment of `pool` through the service, `concurrency` at a time."""
    run_sync(_warm_up(base_url, pool, concurrency))


async def _warm_up(base_url: str, pool: Pool, concurrency: int) -> None:
    calls = Calls(pool)
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


def run_cells(
    config: BenchConfig,
    observer: BenchObserver,
    on_result: Callable[[BenchResult], None] | None = None,
) -> list[BenchResult]:
    """Every strategy in every round, alternating (A B A B ...); one result per cell."""
    results: list[BenchResult] = []
    for round_no in range(1, config.rounds + 1):
        for strategy in config.strategies:
            observer.cell_started(strategy, round_no, config.rounds)
            result = CellRun(config, strategy, round_no, observer).run()
            results.append(result)
            observer.cell_finished(result)
            if on_result is not None:
                on_result(result)
    return results


def measure_ceiling(config: BenchConfig, observer: BenchObserver) -> Ceiling:
    """pgbench's rate for the capture transaction, on a fresh database seeded like a cell's."""
    observer.cell_started("pgbench", 1, 1)
    pool, _ = config.pools()
    with provision(config.database_url) as database:
        observer.phase("tables")
        with running_service(strategy="for_update", database_url=database.url):
            pass  # the service creates its tables at start; pgbench needs nothing else of it
        observer.phase("seeding")
        seed(database.url, pool)
        observer.phase("pgbench")
        return run_pgbench(database.url, pool, config.duration_s)


def with_ceiling(results: Results, ceiling: Ceiling) -> None:
    """Record pgbench's rate, and each strategy's median throughput as a share of it."""
    results.environment["ceiling"] = {"pgbench": ceiling.to_json()}
    for row in results.bench:
        if row.round == AGGREGATE_ROUND and ceiling.tps > 0:
            row.extra["share_of_pgbench"] = round(row.throughput_rps / ceiling.tps, 4)


def exit_code(rows: Sequence[BenchResult], workers: int) -> int:
    """1 if a cell failed or a strategy that promises safety left a violation, else 0."""
    for row in rows:
        if "error" in row.extra:
            return 1
        if expects_safety(row.strategy, workers) and any(row.violations.values()):
            return 1
    return 0


def build_results(config: BenchConfig, rows: Sequence[BenchResult], run_id: str) -> Results:
    """The results file: every round's row, then a median row per strategy."""
    results = Results(run_id=run_id)
    results.environment["bench"] = {
        "profile": config.profile.value,
        "strategies": config.strategies,
        "users": config.users,
        "rate": config.rate,
        "duration_s": config.duration_s,
        "rounds": config.rounds,
        "workers": config.workers,
        "processes": config.processes,
        "load_average_at_start": list(os.getloadavg()),
    }
    results.bench = [*rows, *summarize(rows)]
    return results


def run_bench(
    *,
    strategies: str,
    profile: str,
    users: int,
    rate: float | None,
    duration: str,
    rounds: int,
    workers: int,
    processes: int,
    out: Path | None,
    database_url: str | None,
    ceiling: bool = False,
    observer: BenchObserver | None = None,
) -> int:
    """Run the benchmark, write results.json into the run folder, show the summary; return
    the exit code (see `exit_code`). With `ceiling`, pgbench runs the capture transaction
    after the rounds, in the same run, and each strategy's throughput is set against it."""
    from racebench.loadtests.display import RichObserver, print_summary

    run_id = new_run_id("bench")
    config = BenchConfig(
        strategies=parse_strategies(strategies),
        profile=parse_profile(profile),
        users=users,
        rate=rate,
        duration_s=parse_duration(duration),
        rounds=rounds,
        workers=workers,
        processes=processes,
        run_dir=out or DEFAULT_RUNS_DIR / run_id,
        database_url=database_url,
    )
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be positive, not {rate}")
    load_at_start = os.getloadavg()
    rows: list[BenchResult] = []

    def keep(result: BenchResult) -> None:
        rows.append(result)
        build_results(config, rows, run_id).write(config.run_dir)  # partial results survive

    measured: list[Ceiling] = []

    def run_all(shown: BenchObserver) -> None:
        run_cells(config, shown, keep)
        if ceiling:
            measured.append(measure_ceiling(config, shown))

    if observer is not None:
        run_all(observer)
    else:
        cells = len(config.strategies) * config.rounds
        with RichObserver(cells) as shown:
            run_all(shown)
    results = build_results(config, rows, run_id)
    results.environment["bench"]["load_average_at_start"] = list(load_at_start)
    if measured:
        with_ceiling(results, measured[0])
    path = results.write(config.run_dir)
    print_summary(results, path)
    return exit_code(rows, workers)
