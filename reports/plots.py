"""The report's charts, from the run summary: latency percentiles, throughput, latency over
time, violations. Each returns PNG bytes, or None when the run holds no data for it."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib import colormaps

from racebench.reports.figures import BAD, GOOD, MUTED, colour, new_figure, png
from racebench.reports.summary import BenchSummary, SafetySummary

PERCENTILES = (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))


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


def latency_over_time(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    """p50/p99 per round, in the order the rounds ran (A B A B: a drifting machine shows as
    a slope shared by all)."""
    if not bench:
        return None
    figure = new_figure(8, 3.6)
    ax = figure.add_subplot()
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
