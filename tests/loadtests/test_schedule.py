"""The open model: a fixed schedule shared by processes, latency from the intended start."""

from __future__ import annotations

import pytest

from racebench.loadtests.hdr import LatencyRecorder
from racebench.loadtests.schedule import OpenSchedule, Pacer, corrected_latency_ms


def test_processes_share_one_schedule_without_overlap() -> None:
    schedules = [OpenSchedule(rate=100.0, process_index=i, processes=4) for i in range(4)]

    slots = sorted(s.slot(j) for s in schedules for j in range(25))

    assert slots == list(range(100))
    assert [schedules[1].offset_s(j) for j in range(3)] == [0.01, 0.05, 0.09]


def test_a_schedule_needs_a_rate_and_a_valid_process() -> None:
    with pytest.raises(ValueError):
        OpenSchedule(rate=0.0)
    with pytest.raises(ValueError):
        OpenSchedule(rate=1.0, process_index=2, processes=2)


class FakeClock:
    """A clock that only moves when someone sleeps or a request takes time."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_waits_for_each_slot_and_never_runs_ahead() -> None:
    clock = FakeClock()
    pacer = Pacer(OpenSchedule(rate=4.0), clock=clock.time, sleep=clock.sleep)

    starts = [pacer.next_start() for _ in range(4)]

    assert starts == [1_000.0, 1_000.25, 1_000.5, 1_000.75]
    assert clock.slept == [0.25, 0.25, 0.25]


def test_a_stall_shows_up_in_every_late_request_not_just_one() -> None:
    """One user, 10 requests/s; each answer takes 1 ms except one that stalls for 1 s.

    Measured from the actual start (closed model), the stall is one slow request among fast
    ones. Measured from the intended start, the nine requests that should have gone out during
    the stall carry the wait too: 0.9 s, 0.8 s, ... as wrk2 reports them.
    """
    clock = FakeClock()
    pacer = Pacer(OpenSchedule(rate=10.0), clock=clock.time, sleep=clock.sleep)
    service_times_ms = [1] * 5 + [1_000] + [1] * 14
    open_model, closed_model = LatencyRecorder(), LatencyRecorder()
    corrected: list[float] = []

    for service_ms in service_times_ms:
        intended = pacer.next_start()
        actual = clock.time()
        clock.now += service_ms / 1_000
        closed_model.record_ms(service_ms)
        latency = corrected_latency_ms(
            intended_start=intended, actual_start=actual, response_ms=service_ms
        )
        corrected.append(round(latency, 3))
        open_model.record_ms(latency)

    # Requests 6..14 were due during the stall and each starts 1 ms after the previous one.
    assert corrected == [
        *[1] * 5,
        *[1000, 901, 802, 703, 604, 505, 406, 307, 208, 109, 10],
        *[1] * 4,
    ]
    assert closed_model.percentile_ms(90) == 1.0  # the closed model hides the stall
    assert closed_model.max_us == 1_000_000
    assert open_model.percentile_ms(50) == pytest.approx(10.0, rel=1e-3)
    assert open_model.percentile_ms(90) == pytest.approx(802.0, rel=1e-3)
    assert open_model.max_us == 1_000_000


def test_a_request_that_starts_on_time_is_not_corrected() -> None:
    assert corrected_latency_ms(intended_start=5.0, actual_start=5.0, response_ms=3.5) == 3.5
    assert corrected_latency_ms(intended_start=5.0, actual_start=4.9, response_ms=3.5) == 3.5
    assert corrected_latency_ms(intended_start=5.0, actual_start=5.25, response_ms=3.5) == 253.5
