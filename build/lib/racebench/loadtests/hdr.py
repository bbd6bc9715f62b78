"""Exact latencies: every request's latency in an HDR histogram, mergeable across processes.

Locust rounds its percentiles to about two significant figures. Here every latency is recorded
in microseconds with three significant figures (0.1 % resolution), and the exact sum and max
are kept beside the histogram, so the mean and the max are exact too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from racebench.results import LatencyMs

# 1 us is below anything a network round trip can take; a request that takes an hour is
# beyond any run we make, so nothing we can observe is clipped.
LOWEST_US = 1
HIGHEST_US = 3_600 * 1_000_000
# Three significant figures: 0.1 % resolution, ten times finer than Locust's percentiles.
SIGNIFICANT_FIGURES = 3
US_PER_MS = 1_000.0


def new_histogram() -> HdrHistogram:
    """An empty histogram with racebench's range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


@dataclass
class LatencyRecorder:
    """Latencies of one process (or of many, merged): histogram, exact count, sum and max."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    count: int = 0
    sum_us: int = 0
    max_us: int = 0

    def record_us(self, latency_us: int) -> None:
        """Record one latency (microseconds); values outside the range are clamped into it."""
        value = min(max(int(latency_us), LOWEST_US), HIGHEST_US)
        self.histogram.record_value(value)
        self.count += 1
        self.sum_us += value
        self.max_us = max(self.max_us, value)

    def record_ms(self, latency_ms: float) -> None:
        self.record_us(round(latency_ms * US_PER_MS))

    def merge(self, other: LatencyRecorder) -> None:
        """Add every latency of `other` to this recorder."""
        self.histogram.add(other.histogram)
        self.count += other.count
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)

    def percentile_ms(self, percentile: float) -> float:
        if self.count == 0:
            return 0.0
        return self.histogram.get_value_at_percentile(percentile) / US_PER_MS

    def summary(self) -> LatencyMs:
        """mean, p50, p90, p99, p99.9 and max in milliseconds (zeros when nothing recorded)."""
        mean = self.sum_us / self.count / US_PER_MS if self.count else 0.0
        return LatencyMs(
            mean=round(mean, 4),  # 0.1 us: the exact sum over an integer count
            p50=self.percentile_ms(50.0),
            p90=self.percentile_ms(90.0),
            p99=self.percentile_ms(99.0),
            p999=self.percentile_ms(99.9),
            max=self.max_us / US_PER_MS,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hdr": self.histogram.encode().decode("ascii"),
            "count": self.count,
            "sum_us": self.sum_us,
            "max_us": self.max_us,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyRecorder:
        recorder = cls(count=int(data["count"]), sum_us=int(data["sum_us"]))
        recorder.max_us = int(data["max_us"])
        if recorder.count:
            recorder.histogram.decode_and_add(data["hdr"].encode("ascii"))
        return recorder


def merged(recorders: Iterable[LatencyRecorder]) -> LatencyRecorder:
    """One recorder holding every latency of `recorders`."""
    total = LatencyRecorder()
    for recorder in recorders:
        total.merge(recorder)
    return total
