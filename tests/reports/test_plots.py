"""The charts' labels sit clear of what they annotate: a bar's value above its whisker (the
range of the rounds), a throughput label above the highest round's dot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from racebench.reports import plots
from racebench.reports.figures import BAD
from racebench.reports.summary import BenchSummary, summarize
from racebench.results import Incidents, Results
from tests.reports.synthetic import race_results, write_run


def _bench(tmp_path: Path) -> dict[str, BenchSummary]:
    return summarize(Results.read(write_run(tmp_path / "run"))).bench["contention"]


def _labels(figure: Figure) -> list[Bbox]:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = figure.axes[0]
    return [t.get_window_extent(renderer) for t in ax.texts]


def test_latency_labels_are_past_the_whisker_ends(tmp_path: Path) -> None:
    figure = plots.latency_percentiles_figure(_bench(tmp_path), "contention")
    labels = _labels(figure)
    ax = figure.axes[0]
    whiskers = [
        ax.transData.transform(np.asarray(segment))
        for collection in ax.collections
        if isinstance(collection, LineCollection)
        for segment in collection.get_segments()
    ]
    assert labels and whiskers
    for box in labels:
        for (x0, y0), (x1, y1) in whiskers:
            crosses = box.x0 <= max(x0, x1) and min(x0, x1) <= box.x1
            assert not (crosses and box.y0 < max(y0, y1) and min(y0, y1) < box.y1), box


def test_throughput_labels_are_above_every_round(tmp_path: Path) -> None:
    figure = plots.throughput_figure(_bench(tmp_path), "contention")
    labels = _labels(figure)
    ax = figure.axes[0]
    dots = [
        ax.transData.transform(offset)
        for collection in ax.collections
        if isinstance(collection, PathCollection)
        for offset in collection.get_offsets()
    ]
    assert labels and dots
    for box in labels:
        for x, y in dots:
            if box.x0 <= x <= box.x1:
                assert y < box.y0, (box, y)


def test_expected_races_are_grey_and_labelled_expected(tmp_path: Path) -> None:
    """app_lock races across processes, none everywhere: both expected, so grey, "expected";
    for_update breaking would be an alarm, in red."""
    race = race_results()
    for result in race:
        if result.violations:
            result.incidents = Incidents(payments=1, captured_twice=1, invoices=1)
    broken = next(r for r in race if r.strategy == "for_update")
    broken.verdict, broken.violations = "race_detected", {"DOUBLE_CAPTURE": 1}
    broken.incidents = Incidents(payments=1, captured_twice=1, invoices=1)
    run = write_run(tmp_path / "run", race=race, bench=[])
    safety = summarize(Results.read(run)).safety
    figure = plots.violations_figure(safety)
    ax = figure.axes[0]
    by_strategy: dict[str, list[tuple[str, str]]] = {}
    names = [t.get_text() for t in ax.get_yticklabels()]
    for text in ax.texts:
        strategy = names[round(text.get_position()[1])]
        by_strategy.setdefault(strategy, []).append((text.get_text(), to_hex(text.get_color())))
    for strategy in ("none", "app_lock"):
        for label, colour in by_strategy[strategy]:
            assert label.endswith("(expected)") and colour == to_hex(plots.EXPECTED_RACE)
    for label, colour in by_strategy["for_update"]:
        assert "expected" not in label and colour == to_hex(BAD)
