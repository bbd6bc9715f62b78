"""The report's charts, from the run summary: latency percentiles, throughput, latency over
time, incidents. Each returns PNG bytes, or None when the run holds no data for it."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from racebench.reports.figures import BAD, GOOD, MUTED, colour, new_figure, png
from racebench.reports.summary import BenchSummary, SafetySummary

# Points between the end of a whisker (or the highest dot) and the label above it.
LABEL_GAP_PT = 3
PERCENTILES = (("mean", "mean"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"))


def latency_percentiles(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    return png(latency_percentiles_figure(bench, profile)) if bench else None


def latency_percentiles_figure(bench: Mapping[str, BenchSummary], profile: str) -> Figure:
    """Bars of each percentile's median, whiskers from the lowest to the highest round, and
    each label above its whisker."""
    figure = new_figure(8, 4)
    ax = figure.add_subplot()
    width = 0.8 / len(bench)
    for i, (strategy, summary) in enumerate(bench.items()):
        spreads = [getattr(summary, f"{key}_ms") for key, _ in PERCENTILES]
        xs = [p + i * width - 0.4 + width / 2 for p in range(len(PERCENTILES))]
        heights = [s.median for s in spreads]
        errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
        ax.bar(xs, heights, width, label=strategy, color=colour(strategy, i))
        ax.errorbar(xs, heights, yerr=errors, fmt="none", ecolor="black", capsize=2, lw=0.8)
        for x, h, s in zip(xs, heights, spreads, strict=True):
            # Past the whisker's end, so the label never sits on the range it annotates.
            ax.annotate(
                f"{h:.3g}",
                (x, s.high),
                xytext=(0, LABEL_GAP_PT),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(PERCENTILES)), [name for _, name in PERCENTILES])
    ax.set_ylabel("latency, ms (median of rounds; bars: range)")
    ax.set_title(f"Latency percentiles per strategy ({profile})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure


def throughput(bench: Mapping[str, BenchSummary], profile: str) -> bytes | None:
    return png(throughput_figure(bench, profile)) if bench else None


def throughput_figure(bench: Mapping[str, BenchSummary], profile: str) -> Figure:
    """A bar per strategy (the median), a dot per round, each label above the highest dot."""
    figure = new_figure(8, 3.6)
    ax = figure.add_subplot()
    names = list(bench)
    medians = [bench[s].throughput_rps.median for s in names]
    ax.bar(names, medians, color=[colour(s, i) for i, s in enumerate(names)], alpha=0.85)
    for i, s in enumerate(names):
        values = [r.throughput_rps for r in bench[s].rounds]
        ax.scatter([i] * len(values), values, color="black", s=12, zorder=3)
        # Above the highest round's dot, so the label never covers a round.
        ax.annotate(
            f"{medians[i]:,.1f} req/s",
            (i, max(values)),
            xytext=(0, LABEL_GAP_PT + 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("requests per second")
    ax.set_title(f"Throughput per strategy ({profile}): bar = median, dots = rounds")
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    return figure


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


# Colours of the incidents chart: an unexpected violation is an alarm; an expected race (the
# `none` canary, app_lock across processes) is drawn grey and labelled "expected".
EXPECTED_RACE = MUTED
INCIDENT_KINDS = (("payments", "payments affected"), ("invoices", "invoices affected"))


def violations(safety: Mapping[str, SafetySummary]) -> bytes | None:
    """Incidents per strategy (payments and invoices affected, each counted once, never the
    per-invariant counts added up): red when a strategy expected to hold broke, grey and
    labelled "expected" when every violation was an expected race."""
    tested = {s: v for s, v in safety.items() if v.tested}
    return png(violations_figure(tested)) if tested else None


def violations_figure(safety: Mapping[str, SafetySummary]) -> Figure:
    """The incidents chart of the strategies that were tested."""
    tested = {s: v for s, v in safety.items() if v.tested}
    names = list(tested)
    figure = new_figure(8, 1.1 + 0.6 * len(names))
    ax = figure.add_subplot()
    height = 0.8 / len(INCIDENT_KINDS)
    for k, (kind, label) in enumerate(INCIDENT_KINDS):
        ys = [y - 0.4 + height * (k + 0.5) for y in range(len(names))]
        widths = [float(_incident_count(tested[s], kind)) for s in names]
        colours = [_incident_colour(tested[s]) for s in names]
        ax.barh(ys, widths, height * 0.9, color=colours, alpha=1.0 if k == 0 else 0.55)
        for y, s, width in zip(ys, names, widths, strict=True):
            ax.text(
                width,
                y,
                f"  {_incident_label(tested[s], kind, label)}",
                va="center",
                fontsize=7,
                color=_incident_colour(tested[s]),
            )
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("incidents observed (race scenarios + benchmark rounds), each counted once")
    ax.set_title("Incidents per strategy (grey: an expected race)")
    if not any(_incident_count(v, kind) for v in tested.values() for kind, _ in INCIDENT_KINDS):
        ax.set_xlim(0, 1)
        ax.set_xticks([])
    else:
        ax.margins(x=0.45)
        ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3, color=MUTED)
    return figure


def _incident_count(safety: SafetySummary, kind: str) -> int:
    if safety.incidents is None:
        return 0
    return int(getattr(safety.incidents, kind))


def _incident_colour(safety: SafetySummary) -> str:
    if not safety.violated:
        return GOOD
    return BAD if safety.unexpected_violations else EXPECTED_RACE


def _incident_label(safety: SafetySummary, kind: str, label: str) -> str:
    if not safety.violated:
        return f"0 {label}: every invariant held"
    if safety.incidents is None:
        text = f"{label}: not counted in this results file (violations seen)"
        return text if safety.unexpected_violations else f"{text} (expected)"
    text = f"{_incident_count(safety, kind):,} {label}"
    return text if safety.unexpected_violations else f"{text} (expected)"
