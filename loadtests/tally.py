"""What one Locust process saw, and all of them together: latencies, outcomes, acked webhooks.

Each Locust process (the standalone runner, or every worker of `--processes`/`--worker`) writes
one `tally-<pid>.json` into the report folder when its test stops; the orchestrator merges
them. Files, not Locust messages, so that nothing depends on a message arriving before the
master quits.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racebench.loadtests.hdr import LatencyRecorder

TALLY_GLOB = "tally-*.json"
BUSY_STATUS = 503  # lock timeout: the service says "retry later", not a crash


@dataclass
class Tally:
    """Counts and latencies of one process, or of several merged."""

    latency: LatencyRecorder = field(default_factory=LatencyRecorder)
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    busy: int = 0  # 503 with Retry-After
    failures: int = 0  # anything else unexpected: wrong status, bad body, connection error
    acked_event_ids: list[str] = field(default_factory=list)
    # payment ids of verify answers 200 (captured or replayed): each must be captured (ledger)
    acked_payment_ids: list[int] = field(default_factory=list)
    server_errors: Counter[str] = field(default_factory=Counter)  # 5xx answers by status
    busy_without_retry_after: int = 0  # 503 answers that lacked Retry-After
    transport_errors: int = 0  # no answer at all: reset, refused, timed out
    first_start: float | None = None  # epoch seconds: the earliest (intended) request start
    last_end: float | None = None  # epoch seconds: the latest response
    pool_wrapped: int = 0  # items that had to reuse a payment because the pool ran out
    processes: int = 1
    contended: int = 0  # items that sent two or more requests on one payment at once

    def record(
        self,
        *,
        outcome: str,
        latency_ms: float,
        start: float,
        end: float,
        busy: bool = False,
        failed: bool = False,
        acked_event_id: str | None = None,
        acked_payment_id: int | None = None,
        status: int = 200,
        retry_after: bool = True,
    ) -> None:
        """Count one answered (or failed) request (`status` 0: no answer, a transport error)."""
        self.requests += 1
        self.outcomes[outcome] += 1
        self.latency.record_ms(latency_ms)
        self.busy += busy
        self.failures += failed
        if acked_event_id is not None:
            self.acked_event_ids.append(acked_event_id)
        if acked_payment_id is not None:
            self.acked_payment_ids.append(acked_payment_id)
        if status == 0:
            self.transport_errors += 1
        elif status >= 500:
            self.server_errors[str(status)] += 1
            if status == BUSY_STATUS and not retry_after:
                self.busy_without_retry_after += 1
        self.first_start = start if self.first_start is None else min(self.first_start, start)
        self.last_end = end if self.last_end is None else max(self.last_end, end)

    @property
    def duration_s(self) -> float:
        """From the first request's start to the last response."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return max(self.last_end - self.first_start, 0.0)

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def merge(self, other: Tally) -> None:
        self.latency.merge(other.latency)
        self.outcomes.update(other.outcomes)
        self.requests += other.requests
        self.busy += other.busy
        self.failures += other.failures
        self.acked_event_ids.extend(other.acked_event_ids)
        self.acked_payment_ids.extend(other.acked_payment_ids)
        self.server_errors.update(other.server_errors)
        self.busy_without_retry_after += other.busy_without_retry_after
        self.transport_errors += other.transport_errors
        if other.first_start is not None:
            self.first_start = (
                other.first_start
                if self.first_start is None
                else min(self.first_start, other.first_start)
            )
        if other.last_end is not None:
            self.last_end = (
                other.last_end if self.last_end is None else max(self.last_end, other.last_end)
            )
        self.pool_wrapped += other.pool_wrapped
        self.contended += other.contended

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_json(),
            "outcomes": dict(self.outcomes),
            "requests": self.requests,
            "busy": self.busy,
            "failures": self.failures,
            "acked_event_ids": self.acked_event_ids,
            "acked_payment_ids": self.acked_payment_ids,
            "server_errors": dict(self.server_errors),
            "busy_without_retry_after": self.busy_without_retry_after,
            "transport_errors": self.transport_errors,
            "first_start": self.first_start,
            "last_end": self.last_end,
            "pool_wrapped": self.pool_wrapped,
            "contended": self.contended,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            latency=LatencyRecorder.from_json(data["latency"]),
            outcomes=Counter(data["outcomes"]),
            requests=int(data["requests"]),
            busy=int(data["busy"]),
            failures=int(data["failures"]),
            acked_event_ids=list(data["acked_event_ids"]),
            acked_payment_ids=[int(i) for i in data.get("acked_payment_ids", [])],
            server_errors=Counter(data.get("server_errors", {})),
            busy_without_retry_after=int(data.get("busy_without_retry_after", 0)),
            transport_errors=int(data.get("transport_errors", 0)),
            first_start=data["first_start"],
            last_end=data["last_end"],
            pool_wrapped=int(data["pool_wrapped"]),
            contended=int(data.get("contended", 0)),
        )

    def write(self, folder: Path, name: str | None = None) -> Path:
        """Write this tally as `tally-<name, default this pid>.json` (atomically: a rename)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"tally-{name or os.getpid()}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.to_json()))
        partial.replace(path)
        return path


def merge_tallies(tallies: Iterable[Tally]) -> Tally:
    """One tally for the whole run."""
    total = Tally(processes=0)
    parts = list(tallies)
    for part in parts:
        total.merge(part)
    total.processes = len(parts)
    return total


def read_tallies(folder: Path) -> list[Tally]:
    """Every process tally in `folder`."""
    return [Tally.from_json(json.loads(p.read_text())) for p in sorted(folder.glob(TALLY_GLOB))]
