"""The report's charts, from the run summary: latency percentiles, throughput, latency over
time, violations. Each returns PNG bytes, or None when the run holds no data for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib import colormaps

from racebench.reports.figures import BAD, GOOD, MUTED, colour, new_figure, png
from racebench.reports.summary import BenchSummary, SafetySummary

PERCENTILES = (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))
# Keys BenchResult.extra may use for a per-interval series (see latency_over_time).
SERIES_KEYS = ("timeseries", "series", "latency_over_time")
SERIES_TIME_KEYS = ("t_s", "t", "time_s", "second")
SERIES_P50_KEYS = ("p50_ms", "p50")
SERIES_P99_KEYS = ("p99_ms", "p99")


def latency_percentiles(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    if not bench:
        return None
    figure = new_figure(8, 4)
    ax = figure.add_subplot()
    width = 0.8 / len(bench)
    for i, (strategy, summary) in enumerate(bench.items()):
        spreads = [getattr(summary, f"{key}_ms") for key, _ in PERCENTILES]
        xs = [p + i * width - 0.4 + width / 2 for p in range(len(PERCENTILES))]
        heights = [s.median for s in spreads]
        errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        bars = ax.bar(xs, heights, width, label=strategy, color=colour(strategy, i))
        ax.errorbar(xs, heights, yerr=errors, fmt="none", ecolor="black", capsize=2, lw=0.8)
        ax.bar_label(bars, labels=[f"{h:.3g}" for h in heights], fontsize=7, padding=2)
    ax.set_xticks(range(len(PERCENTILES)), [name for _, name in PERCENTILES])
    ax.set_ylabel("latency, ms (median of rounds; bars: range)")
    ax.set_title(f"Latency percentiles per strategy ({profile})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(figure)


def throughput(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    if not bench:
        return None
    figure = new_figure(8, 3.6)
    ax = figure.add_subplot()
    names = list(bench)
    medians = [bench[s].throughput_rps.median for s in names]
    bars = ax.bar(names, medians, color=[colour(s, i) for i, s in enumerate(names)], alpha=0.85)
    ax.bar_label(bars, labels=[f"{m:,.1f} req/s" for m in medians], fontsize=8, padding=3)
    for i, s in enumerate(names):
        values = [r.throughput_rps for r in bench[s].rounds]
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
    ax.set_ylabel("requests per second")
    ax.set_title(f"Throughput per strategy ({profile}): bar = median, dots = rounds")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    return png(figure)


def _series(extra: Mapping[str, Any]) -> list[tuple[float, float | None, float | None]]:
    """(t_s, p50, p99) points from BenchResult.extra, if the benchmark recorded a series."""
    raw = next((extra[k] for k in SERIES_KEYS if isinstance(extra.get(k), list)), None)
    points = []
    for row in raw or []:
        if not isinstance(row, Mapping):
            continue
        t = next((row[k] for k in SERIES_TIME_KEYS if isinstance(row.get(k), int | float)), None)
        p50 = next((row[k] for k in SERIES_P50_KEYS if isinstance(row.get(k), int | float)), None)
        p99 = next((row[k] for k in SERIES_P99_KEYS if isinstance(row.get(k), int | float)), None)
        if t is not None and (p50 is not None or p99 is not None):
            points.append((float(t), p50, p99))
    return points


def latency_over_time(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    """Per-second latency if the benchmark recorded a series; else p50/p99 per round, in the
    order the rounds ran (A B A B: a drifting machine shows as a slope shared by all)."""
    if not bench:
        return None
    figure = new_figure(8, 3.6)
    ax = figure.add_subplot()
    series = {s: [(r.round, _series(r.extra)) for r in b.rounds] for s, b in bench.items()}
    if any(points for rounds in series.values() for _, points in rounds):
        for i, (strategy, rounds) in enumerate(series.items()):
            for n, (_, points) in enumerate(rounds):
                ts = [t for t, _, p99 in points if p99 is not None]
                p99s = [p99 for _, _, p99 in points if p99 is not None]
                label = f"{strategy} p99" if n == 0 else None
                ax.plot(ts, p99s, color=colour(strategy, i), lw=1, alpha=0.8, label=label)
        ax.set_xlabel("seconds into the round")
        ax.set_title(f"Latency over time ({profile}): p99 per interval, every round")
    else:
        order = len(bench)
        for i, (strategy, summary) in enumerate(bench.items()):
            xs = [(r.round - 1) * order + i + 1 for r in summary.rounds]
            c = colour(strategy, i)
            p50 = [r.latency_ms.p50 for r in summary.rounds]
            p99 = [r.latency_ms.p99 for r in summary.rounds]
            ax.plot(xs, p99, "o-", color=c, label=f"{strategy} p99")
            ax.plot(xs, p50, "s--", color=c, alpha=0.6, label=f"{strategy} p50")
        ax.set_xlabel("benchmark run, in the order run (rounds alternate strategies)")
        ax.set_title(f"Latency over time ({profile}): p50 and p99 of each round")
    ax.set_ylabel("latency, ms")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return png(figure)


def violations(safety: Mapping[str, SafetySummary]) -> bytes | None:
    tested = {s: v for s, v in safety.items() if v.tested}
    if not tested:
        return None
    names = list(tested)
    codes = sorted({c for v in tested.values() for c in v.violations})
    figure = new_figure(8, 0.9 + 0.45 * len(names))
    ax = figure.add_subplot()
    lefts = [0.0] * len(names)
    cmap = colormaps["tab10"]
    for k, code in enumerate(codes):
        widths = [float(tested[s].violations.get(code, 0)) for s in names]
        ax.barh(names, widths, left=lefts, label=code, color=cmap(k % cmap.N))
        lefts = [a + b for a, b in zip(lefts, widths, strict=True)]
    for y, s in enumerate(names):
        total = tested[s].total_violations
        text = f"{total:,}" if total else "0 ✓"
        ax.text(lefts[y], y, f"  {text}", va="center", fontsize=8, color=BAD if total else GOOD)
    ax.invert_yaxis()
    ax.set_xlabel("violations observed (race scenarios + benchmark rounds)")
    ax.set_title("Violations per strategy")
    ax.margins(x=0.12)
    if codes:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.set_xlim(0, 1)
        ax.set_xticks([])
    ax.grid(axis="x", alpha=0.3, color=MUTED)
    return png(figure)
