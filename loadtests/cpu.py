"""CPU use of process trees while the load runs: is Locust (or the service) saturated?

A sampler thread reads each process's CPU times every CPU_SAMPLE_INTERVAL_S. A process's use is
its CPU seconds over the time it was watched, in cores: 1.0 means one core busy all along, which
for single-threaded Locust or a uvicorn worker means saturated.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from racebench.results import CpuFigures, CpuGroup

# Often enough to see a Locust worker forked after the start, cheap enough to be invisible.
CPU_SAMPLE_INTERVAL_S = 0.5


@dataclass
class _Seen:
    first_cpu_s: float
    first_at: float
    last_cpu_s: float
    last_at: float


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class CpuSampler:
    """Samples the CPU of named process trees, and of the whole machine, until stopped."""

    roots: dict[str, int]  # group name -> root pid (its children are included)
    # group name -> text in the command line: PostgreSQL names each backend's database in its
    # process title, so this finds the backends that serve one cell's database and no others.
    matching: dict[str, str] = field(default_factory=dict)
    interval_s: float = CPU_SAMPLE_INTERVAL_S
    _seen: dict[str, dict[int, _Seen]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _machine_start: Any = None
    _machine_end: Any = None

    def start(self) -> CpuSampler:
        self._machine_start = psutil.cpu_times()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        for group, root_pid in self.roots.items():
            try:
                root = psutil.Process(root_pid)
                groups[group] = [root, *root.children(recursive=True)]
            except psutil.Error:
                groups[group] = []
        if self.matching:
            for process in psutil.process_iter(["cmdline"]):
                cmdline = " ".join(process.info["cmdline"] or ())
                for group, text in self.matching.items():
                    if text in cmdline:
                        groups.setdefault(group, []).append(process)
        return groups

    def _sample(self) -> None:
        now = time.monotonic()
        for group, processes in self._groups().items():
            seen = self._seen.setdefault(group, {})
            for process in processes:
                try:
                    cpu = _cpu_s(process)
                except psutil.Error:
                    continue
                entry = seen.get(process.pid)
                if entry is None:
                    seen[process.pid] = _Seen(cpu, now, cpu, now)
                else:
                    entry.last_cpu_s, entry.last_at = cpu, now

    def stop(self) -> CpuFigures:
        """Stop sampling; per group: busiest process and total, in cores; machine busy share."""
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._machine_end = psutil.cpu_times()
        return self.figures()

    def figures(self) -> CpuFigures:
        groups: dict[str, CpuGroup] = {}
        for group, seen in self._seen.items():
            uses = [
                (s.last_cpu_s - s.first_cpu_s) / (s.last_at - s.first_at)
                for s in seen.values()
                if s.last_at - s.first_at > 0
            ]
            groups[group] = CpuGroup(
                processes=len(uses),
                busiest_cores=round(max(uses, default=0.0), 3),
                total_cores=round(sum(uses), 3),
            )
        cpus = psutil.cpu_count() or 1
        figures = CpuFigures(groups=groups, cpus=cpus)
        if self._machine_start is not None and self._machine_end is not None:
            busy = _busy_share(self._machine_start, self._machine_end)
            figures.machine_busy = round(busy, 3)
            # Busy cores that none of the watched groups used: everyone else on the machine.
            ours = sum(g.total_cores for g in groups.values())
            figures.other_cores = round(max(0.0, busy * cpus - ours), 3)
        return figures


def cpu_ms_per_request(cpu: CpuFigures, throughput_rps: float) -> float | None:
    """CPU time the system under test (service + its PostgreSQL backends) spent per request.

    On a machine shared with other work, throughput follows whatever CPU is left over; the CPU
    each request costs does much less, so it compares strategies more steadily.
    """
    service, postgres = cpu.groups.get("service"), cpu.groups.get("postgres")
    if throughput_rps <= 0 or service is None or postgres is None:
        return None
    return round(1_000.0 * (service.total_cores + postgres.total_cores) / throughput_rps, 4)


def _busy_share(start: Any, end: Any) -> float:
    """Share of all cores' time that was not idle between two psutil.cpu_times() readings."""
    idle = (end.idle + getattr(end, "iowait", 0.0)) - (start.idle + getattr(start, "iowait", 0.0))
    total = sum(end) - sum(start)
    return 1.0 - idle / total if total > 0 else 0.0
