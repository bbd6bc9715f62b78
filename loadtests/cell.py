"""One cell of the benchmark: one strategy in one round, from a fresh database to its result.

In order:
1. a fresh database (harness.database.provision), dropped afterwards;
2. the service as a subprocess (`racebench serve --strategy S --workers W`, or a target's
   command for a variant), awaited until healthy (it creates its tables);
3. the pool of pending payments (the system's: seeded in bulk for the reference service, made
   through a target's template for a target);
4. a warm-up on payments of its own (connections opened, code paths warm);
5. Locust as a subprocess (`--processes P`), the CPU of Locust and the service sampled;
6. the service stopped, then the invariant queries run on what is left in the database,
   with every webhook event id that was answered 2xx (WEBHOOK_LOST).

Ctrl-C (KeyboardInterrupt) unwinds every context: Locust's process group and the service's are
stopped, and the database dropped, before the exception leaves `CellRun.run`.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from racebench.harness.processes import running_service, stop_process_group
from racebench.loadtests.config import LOCUST_STARTUP_ALLOWANCE_S, BenchConfig
from racebench.loadtests.cpu import CpuSampler, cpu_ms_per_request
from racebench.loadtests.faults import LOCUST_START_S, FaultInjector
from racebench.loadtests.locust_run import JSON_STEM, LocustPlan, locust_figures
from racebench.loadtests.pool import Pool
from racebench.loadtests.system import arm_database, warm_up_all
from racebench.loadtests.tally import TALLY_GLOB, merge_tallies, read_tallies
from racebench.progress import Progress
from racebench.results import BenchResult, CpuFigures, FaultFigures, LocustFigures

# Past its --run-time, Locust stops its users at once (--stop-timeout 0) and writes its files;
# if it is still running this long after, something is wrong and we stop it.
LOCUST_EXIT_GRACE_S = 60.0
# What Locust logs when one of its processes is CPU-bound.
CPU_WARNING = "CPU usage above"
# How often the progress display hears from a running Locust.
PROGRESS_TICK_S = 0.5
RESULT_FILE = "result.json"  # each cell's own result, beside its logs


class _Nobody:
    """Where the progress of a runner given no hook goes."""

    def started(self, label: str, index: int, total: int) -> None:
        pass

    def phase(self, name: str) -> None:
        pass

    def advanced(self, done: float, total: float) -> None:
        pass

    def finished(self, result: object) -> None:
        pass


NOBODY = _Nobody()


@dataclass
class CellRun:
    """One strategy in one round; `run()` returns its BenchResult."""

    config: BenchConfig
    strategy: str
    round_no: int
    progress: Progress[BenchResult] = NOBODY
    label: str | None = None  # the arm's name, when it is not the strategy's
    cell_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        name = (self.label or self.strategy).replace(":", "-")
        self.cell_dir = self.config.run_dir.resolve() / "cells" / f"r{self.round_no}-{name}"

    def run(self) -> BenchResult:
        config = self.config
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        for stale in (*self.cell_dir.glob(TALLY_GLOB), self.cell_dir / f"{JSON_STEM}.json"):
            stale.unlink(missing_ok=True)  # a reused --out folder must not add old requests
        pool, warmup_pool = config.pools()
        self.progress.phase("database")
        faults: FaultFigures | None = None
        system = config.system
        with arm_database(system, config.database_url, restartable=config.faults) as database:
            self.progress.phase("service")
            spec = system.service(
                self.strategy, database.url, config.workers, self.cell_dir / "service.log"
            )
            with running_service(spec) as service:
                self.progress.phase("seeding")
                system.seed(database.url, service.base_url, (pool, warmup_pool), self.cell_dir)
                self.progress.phase("warm-up")
                warm_up_all(system, [service.base_url], warmup_pool, [self.cell_dir])
                self.progress.phase("load")
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
                    extra=tuple(system.locust_options(self.cell_dir)),
                )
                injector = None
                if config.faults:
                    if database.owned_server is None:
                        raise RuntimeError("--faults needs an embedded PostgreSQL of its own")
                    injector = FaultInjector(
                        server=database.owned_server,
                        database_url=database.url,
                        database_name=database.name,
                        base_url=service.base_url,
                        restart_after_s=LOCUST_START_S + plan.duration_s / 2,
                        kill_every_s=config.kill_every_s,
                        application_name=system.application_name,
                        health=spec.health,
                    )
                returncode, cpu, faults = self._run_locust(
                    plan, service.pid, database.name if system.own_databases else None, injector
                )
            # The service is stopped: what is in the database now is all it will ever write.
            return self._result(database.url, (pool, warmup_pool), returncode, cpu, faults)

    def _run_locust(
        self,
        plan: LocustPlan,
        service_pid: int,
        database_name: str | None,
        injector: FaultInjector | None = None,
    ) -> tuple[int, CpuFigures, FaultFigures | None]:
        return run_locust(
            plan,
            self.cell_dir,
            self.progress,
            services={"service": service_pid},
            # its backends' process titles name its database (a shared one: not its alone)
            matching={"postgres": f" {database_name} "} if database_name else {},
            injector=injector,
        )

    def _result(
        self,
        database_url: str,
        pools: tuple[Pool, ...],
        returncode: int,
        cpu: CpuFigures,
        faults: FaultFigures | None = None,
    ) -> BenchResult:
        config = self.config
        self.progress.phase("invariants")
        result = bench_row(
            config,
            self.cell_dir,
            database_url,
            strategy=self.strategy,
            label=self.label,
            round_no=self.round_no,
            pools=pools,
            returncode=returncode,
            cpu=cpu,
            # Locust warns when one of its processes passes 90 % CPU (its own saturation check).
            cpu_warning=CPU_WARNING in (self.cell_dir / "locust.log").read_text(errors="replace"),
            locust=locust_figures(self.cell_dir / f"{JSON_STEM}.json"),
            faults=faults,
        )
        (self.cell_dir / RESULT_FILE).write_text(result.model_dump_json(indent=2))
        return result


def run_locust(
    plan: LocustPlan,
    folder: Path,
    progress: Progress[BenchResult],
    *,
    services: dict[str, int],
    matching: dict[str, str],
    env: dict[str, str] | None = None,
    injector: FaultInjector | None = None,
) -> tuple[int, CpuFigures, FaultFigures | None]:
    """Run Locust in `folder` (its log there) until it exits or overstays; meanwhile sample
    the CPU of Locust, of the `services` (group -> root pid) and of the processes whose title
    holds `matching`'s text (a database's backends), and play the injector's faults."""
    with (folder / "locust.log").open("wb") as log:
        process = subprocess.Popen(
            plan.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Ctrl-C here reaches it only through us
            cwd=folder,  # Locust writes nothing relative; the folder is its home
            env=env,
        )
        sampler = CpuSampler({"locust": process.pid, **services}, matching=matching).start()
        if injector is not None:
            injector.start()
        started = time.monotonic()
        deadline = started + plan.duration_s + LOCUST_STARTUP_ALLOWANCE_S + LOCUST_EXIT_GRACE_S
        try:
            while True:
                try:
                    returncode = process.wait(timeout=PROGRESS_TICK_S)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    progress.advanced(now - started, plan.duration_s)
                    if now > deadline:
                        stop_process_group(process)
                        returncode = process.returncode
                        break
        finally:
            faults = injector.stop() if injector is not None else None
            cpu = sampler.stop()
            stop_process_group(process)
    return returncode, cpu, faults


def bench_row(
    config: BenchConfig,
    folder: Path,
    database_url: str,
    *,
    strategy: str,
    label: str | None,
    round_no: int,
    pools: tuple[Pool, ...],
    returncode: int,
    cpu: CpuFigures,
    cpu_warning: bool,
    locust: LocustFigures | None = None,
    faults: FaultFigures | None = None,
) -> BenchResult:
    """One strategy's row of one round: what its Locust processes tallied in `folder`, and
    what the invariants found in its database (`config` is the arm's: its users and rate;
    `pools[0]` is the measured one)."""
    tally = merge_tallies(read_tallies(folder))
    found = config.system.check(database_url, pools, tally, folder)
    outcome = found.result
    violations = dict(outcome.counts)
    return BenchResult(
        strategy=strategy,
        profile=config.profile.name,
        round=round_no,
        users=config.users,
        label=label if label != strategy else None,
        order=config.order,
        rate=config.rate,
        duration_s=round(tally.duration_s, 3),
        requests=tally.requests,
        failures=tally.failures,
        throughput_rps=round(tally.throughput_rps, 1),
        latency_ms=tally.latency.summary(),
        violations=violations,
        incidents=outcome.incidents,
        invariants=outcome.invariants,
        error=None
        if tally.requests
        else f"Locust sent no requests (exit {returncode}); see locust.log",
        workers=config.workers,
        expected_safe=config.system.expected_safe(strategy, config.workers),
        model="closed" if config.rate is None else "open",
        busy=tally.busy,
        outcomes=dict(sorted(tally.outcomes.items())),
        acked_webhooks=len(tally.acked_event_ids),
        pool_size=pools[0].size,
        pool_wrapped=tally.pool_wrapped,
        contended_payments=tally.contended,
        locust_processes=tally.processes,
        locust_returncode=returncode,
        locust_cpu_warning=cpu_warning,
        locust=locust,
        cpu=cpu,
        cpu_ms_per_request=cpu_ms_per_request(cpu, tally.throughput_rps),
        server_errors=dict(sorted(tally.server_errors.items())),
        busy_without_retry_after=tally.busy_without_retry_after,
        transport_errors=tally.transport_errors,
        acked_captures=len(set(tally.acked_payment_ids)),
        lost_captures=found.lost_captures,
        lost_webhooks=found.lost_webhooks,
        faults=faults,
    )
