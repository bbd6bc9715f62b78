"""The exact-latency histogram: recording, the JSON round trip, and merging across processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from racebench.loadtests.hdr import LatencyRecorder, merged
from racebench.loadtests.tally import Tally, merge_tallies, read_tallies
from racebench.results import LatencyMs


def _recorder(values_us: range) -> LatencyRecorder:
    recorder = LatencyRecorder()
    for value in values_us:
        recorder.record_us(value)
    return recorder


def test_merge_equals_one_histogram_of_every_value() -> None:
    # Values below 2048 us sit in HDR's exact sub-buckets at 3 significant figures.
    first, second = _recorder(range(1, 501)), _recorder(range(501, 1001))
    restored = [LatencyRecorder.from_json(r.to_json()) for r in (first, second)]

    total = merged(restored)

    assert total.count == 1000
    assert total.summary() == LatencyMs(
        mean=0.5005, p50=0.5, p90=0.9, p99=0.99, p999=0.999, max=1.0
    )
    assert total.summary() == _recorder(range(1, 1001)).summary()


def test_mean_and_max_are_exact_beyond_the_histogram_resolution() -> None:
    recorder = _recorder(range(0, 0))
    recorder.record_ms(123.4567)
    recorder.record_ms(1.0)

    summary = recorder.summary()

    assert summary.max == 123.457  # exact to the microsecond, not to 0.1 %
    assert summary.mean == 62.2285  # (123_457 us + 1_000 us) / 2, exact
    assert summary.p99 == pytest.approx(123.457, rel=1e-3)  # the histogram: to 0.1 %


def test_an_empty_recorder_summarises_to_zeros() -> None:
    zeros = LatencyMs(mean=0.0, p50=0.0, p90=0.0, p99=0.0, p999=0.0, max=0.0)
    assert LatencyRecorder().summary() == zeros
    assert LatencyRecorder.from_json(LatencyRecorder().to_json()).count == 0


def test_process_tallies_merge_from_their_files(tmp_path: Path) -> None:
    a, b = Tally(), Tally()
    a.record(outcome="verify:captured", latency_ms=2.0, start=100.0, end=100.002)
    a.record(outcome="webhook:503", latency_ms=4.0, start=101.0, end=101.004, busy=True)
    b.record(
        outcome="webhook:processed", latency_ms=1.0, start=99.5, end=102.5, acked_event_id="e1"
    )
    b.record(outcome="verify:500", latency_ms=8.0, start=100.0, end=100.008, failed=True)
    b.pool_wrapped = 3
    a.write(tmp_path, "a")
    b.write(tmp_path, "b")

    total = merge_tallies(read_tallies(tmp_path))

    assert total.processes == 2
    assert total.requests == 4
    assert total.busy == 1 and total.failures == 1
    assert total.acked_event_ids == ["e1"]
    assert total.pool_wrapped == 3
    assert total.duration_s == 3.0  # 99.5 .. 102.5
    assert total.throughput_rps == 4 / 3.0
    assert total.latency.summary().max == 8.0
    assert dict(total.outcomes) == {
        "verify:captured": 1,
        "webhook:503": 1,
        "webhook:processed": 1,
        "verify:500": 1,
    }


def test_collect_merges_the_tallies_of_a_hand_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from racebench.loadtests.__main__ import app

    for name, latency in (("w1", 2.0), ("w2", 6.0)):
        tally = Tally()
        tally.record(outcome="verify:captured", latency_ms=latency, start=10.0, end=12.0)
        tally.write(tmp_path, name)

    result = CliRunner().invoke(app, ["collect", str(tmp_path)])

    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["processes"] == 2 and figures["requests"] == 2
    assert figures["throughput_rps"] == 1.0
    assert figures["latency_ms"]["mean"] == 4.0 and figures["latency_ms"]["max"] == 6.0
