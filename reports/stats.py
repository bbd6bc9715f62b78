"""Differences with their uncertainty: a 95% confidence interval and a verdict for each.

Within one bench, arm B is compared with arm A round by round: the two ran in the same round
(at the same time with `--order concurrent`, back to back otherwise), so each round gives one
paired difference, 100 * (B / A - 1) percent, and the interval is Student's t-interval over
those differences (mean +- t(0.975, n-1) * sd / sqrt(n)). Between two runs (a baseline and
today's), nothing pairs the rounds: Welch's t-interval on the two sets of rounds, expressed as a
percentage of the baseline's mean.

A verdict is printed only from two pairs (two rounds) on, and says "no measurable difference"
whenever the interval holds zero, as pyperf's "Not significant" does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
METHOD = "paired t-interval over rounds (95%)"
# The two aggregates a change against a baseline is shown as; every percentage says which.
MEDIANS = "medians"  # the change between the two strategies' medians over their rounds
PAIRED_MEAN = "paired mean"  # the mean of the round-by-round differences, with its interval
WELCH_MEAN = "difference of means"  # two runs' round means (Welch), against a baseline run
BASELINE_METHOD = "Welch t-interval over rounds (95%)"

# Student's t at 0.975 by degrees of freedom (two-sided 95%).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: float) -> float:
    """Student's t quantile for a two-sided 95% interval with `df` degrees of freedom."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[max(0, math.floor(df) - 1)]
    return 1.960 + 2.40 / df  # within 0.002 of the exact value past 30


@dataclass(frozen=True)
class Interval:
    """A difference in percent of A (B / A - 1), with its 95% interval; None bounds with one
    pair. `sd` is the spread of the per-round differences (paired) or its Welch equivalent."""

    mean: float
    low: float | None
    high: float | None
    n: int
    sd: float | None = None
    method: str = METHOD

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def holds_zero(self) -> bool:
        return self.low is not None and self.high is not None and self.low <= 0 <= self.high

    def rounds_for(self, half_width: float) -> int | None:
        """About how many rounds would narrow the interval to +-`half_width` percent."""
        if self.sd is None or half_width <= 0 or self.n < 2:
            return None
        n = self.n
        for _ in range(20):  # t depends on n: iterate to a fixed point
            n = max(2, math.ceil((t975(n - 1) * self.sd / half_width) ** 2))
        return n

    def text(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.mean:+.1f}% (one round: no interval)"
        return f"{self.mean:+.1f}% (95% CI {self.low:+.1f}%..{self.high:+.1f}%)"


def paired(pairs: Sequence[tuple[float, float]]) -> Interval | None:
    """(A, B) per round -> the interval of 100 * (B / A - 1). Pairs with A = 0 are left out."""
    diffs = [100.0 * (b / a - 1.0) for a, b in pairs if a]
    if not diffs:
        return None
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Interval(mean, None, None, 1)
    sd = statistics.stdev(diffs)
    half = t975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return Interval(mean, mean - half, mean + half, len(diffs), sd)


def welch(old: Sequence[float], new: Sequence[float]) -> Interval | None:
    """Rounds of a baseline run and of a new one -> the interval of the new mean over the old,
    in percent of the old mean (Welch's t, unequal variances)."""
    if not old or not new or not statistics.fmean(old):
        return None
    base = statistics.fmean(old)
    mean = 100.0 * (statistics.fmean(new) / base - 1.0)
    if len(old) < 2 or len(new) < 2:
        return Interval(mean, None, None, min(len(old), len(new)), method=BASELINE_METHOD)
    v_old, v_new = statistics.variance(old) / len(old), statistics.variance(new) / len(new)
    se = math.sqrt(v_old + v_new)
    if se == 0:
        return Interval(mean, mean, mean, min(len(old), len(new)), 0.0, BASELINE_METHOD)
    df = (v_old + v_new) ** 2 / (v_old**2 / (len(old) - 1) + v_new**2 / (len(new) - 1) or math.inf)
    half = 100.0 * t975(df) * se / base
    # The spread one more pair of rounds would have, for rounds_for().
    sd = 100.0 * se * math.sqrt(min(len(old), len(new))) / base
    return Interval(mean, mean - half, mean + half, min(len(old), len(new)), sd, BASELINE_METHOD)


@dataclass(frozen=True)
class Metric:
    """How to word a difference: what more of it means, and the resolution asked of it."""

    name: str
    more: str  # the word for a higher B: "slower", "faster", "costlier"
    less: str
    resolution_pct: float  # the smallest difference worth resolving, for the rounds estimate


THROUGHPUT = Metric("throughput", "faster", "slower", 2.0)
MEAN_LATENCY = Metric("mean latency", "slower", "faster", 2.0)
P99_LATENCY = Metric("p99 latency", "slower", "faster", 5.0)
CPU_PER_REQUEST = Metric("CPU per request", "costlier", "cheaper", 1.0)


def verdict(interval: Interval | None, metric: Metric) -> str:
    """'no measurable difference (95% CI -3.1%..+1.4%)', 'slower by 12% (9..15%)', or, with one
    round, no verdict."""
    if interval is None:
        return "not measured"
    if interval.low is None or interval.high is None:
        return f"{interval.mean:+.1f}% in one round: no verdict"
    ci = f"95% CI {interval.low:+.1f}%..{interval.high:+.1f}%"
    if interval.holds_zero:
        text = f"no measurable difference ({ci})"
        half = interval.half_width or 0.0
        if half > metric.resolution_pct:
            needed = interval.rounds_for(metric.resolution_pct)
            if needed is not None:
                text += f"; about {needed} rounds to resolve +-{metric.resolution_pct:g}%"
        return text
    word = metric.more if interval.mean > 0 else metric.less
    low, high = sorted((abs(interval.low), abs(interval.high)))
    return f"{word} by {abs(interval.mean):.1f}% ({low:.1f}..{high:.1f}%)"
