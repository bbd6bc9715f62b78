"""Locust as a subprocess: the command for one run, and Locust's own figures from --json-file.

Locust monkey-patches the standard library with gevent when it is imported, so the orchestrator
never imports it: it runs `python -m locust` in its own process group, and can always stop that
group (workers of `--processes` included).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from racebench.loadtests.pool import Pool
from racebench.loadtests.profiles import Profile
from racebench.results import LocustFigures

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
JSON_STEM = "locust"  # Locust writes <stem>.json
# Locust's rounded response-time buckets, read back for its own p50/p99 (for reference only).
LOCUST_PERCENTILES = (50.0, 99.0)


@dataclass(frozen=True)
class LocustPlan:
    """Everything one Locust run needs."""

    base_url: str | None  # None: the locustfile's arms name their hosts (RACEBENCH_ARMS)
    profile: Profile
    pool: Pool
    users: int
    duration_s: float
    processes: int
    tally_dir: Path
    rate: float | None = None  # open model: work items per second (None: closed model)
    hot_epoch: float | None = None
    extra: tuple[str, ...] = ()  # the system's own options (a target's file and pool)

    def command(self) -> list[str]:
        """`python -m locust ...` for this plan (headless, summary only)."""
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            *(["--host", self.base_url] if self.base_url else []),
            "--users",
            str(self.users),
            "--spawn-rate",
            str(self.users),  # every user at once: the measured time is all full load
            "--run-time",
            f"{max(1, round(self.duration_s))}s",
            "--stop-timeout",
            "0",
            "--only-summary",
            "--loglevel",
            "WARNING",
            "--json-file",
            str(self.tally_dir / JSON_STEM),
            "--bench-profile",
            self.profile.name,
            "--pool-first",
            str(self.pool.first),
            "--pool-size",
            str(self.pool.size),
            "--pool-amount",
            str(self.pool.amount),
            "--tally-dir",
            str(self.tally_dir),
        ]
        if self.rate is not None:
            command += ["--open-rate", repr(self.rate)]
        if self.hot_epoch is not None:
            command += ["--hot-epoch", repr(self.hot_epoch)]
        if self.processes > 1:
            command += ["--processes", str(self.processes)]
        return command + list(self.extra)


def locust_figures(json_path: Path) -> LocustFigures | None:
    """Locust's own totals from its --json-file (its percentiles are rounded: reference only)."""
    try:
        entries: list[dict[str, Any]] = json.loads(json_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not entries:
        return None
    requests = sum(int(e["num_requests"]) for e in entries)
    failures = sum(int(e["num_failures"]) for e in entries)
    total_ms = sum(float(e["total_response_time"]) for e in entries)
    start = min(float(e["start_time"]) for e in entries)
    end = max(float(e["last_request_timestamp"] or start) for e in entries)
    buckets: dict[int, int] = {}
    for entry in entries:
        for value, count in entry["response_times"].items():
            buckets[int(float(value))] = buckets.get(int(float(value)), 0) + int(count)
    return LocustFigures(
        requests=requests,
        failures=failures,
        mean_ms=round(total_ms / requests, 3) if requests else 0.0,
        max_ms=round(max(float(e["max_response_time"] or 0) for e in entries), 3),
        throughput_rps=round(requests / (end - start), 1) if end > start else 0.0,
        percentiles_ms={
            f"p{percentile:g}": _bucket_percentile(buckets, requests, percentile)
            for percentile in LOCUST_PERCENTILES
        },
    )


def _bucket_percentile(buckets: dict[int, int], total: int, percentile: float) -> float:
    if total == 0:
        return 0.0
    wanted = total * percentile / 100.0
    seen = 0
    for value in sorted(buckets):
        seen += buckets[value]
        if seen >= wanted:
            return float(value)
    return float(max(buckets))
