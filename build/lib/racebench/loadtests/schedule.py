"""The open model: items on a fixed schedule, latency measured from each item's intended start.

A closed model (Locust's `--users`) sends the next request only when the previous one has
answered, so a stalled server also stalls the load: the requests it would have received during
the stall are never sent, and their latencies never recorded (coordinated omission). The open
model fixes each item's start in advance, `rate` items per second, as wrk2 does; a request that
starts late because every user was still waiting is measured from when it should have started,
so a stall shows up in the tail instead of hiding from it.

With several Locust processes, process `i` of `n` takes slots i, i+n, i+2n, ... of one global
schedule, so together they keep the schedule's rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MS_PER_S = 1_000.0


@dataclass(frozen=True, slots=True)
class OpenSchedule:
    """`rate` items per second across `processes` processes; this is process `process_index`."""

    rate: float
    process_index: int = 0
    processes: int = 1

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"an open schedule needs a positive rate, not {self.rate}")
        if not 0 <= self.process_index < self.processes:
            raise ValueError(f"process {self.process_index} is not one of {self.processes}")

    def slot(self, j: int) -> int:
        """The global slot number of this process's j-th item."""
        return self.process_index + self.processes * j

    def offset_s(self, j: int) -> float:
        """When this process's j-th item should start, in seconds after the schedule starts."""
        return self.slot(j) / self.rate


class Pacer:
    """Hands out intended start times of one process's schedule, waiting until each is due.

    Every user of the process shares one pacer; a user that asks when its slot is already past
    gets it at once, and the request's latency then counts from the intended start.
    """

    def __init__(
        self,
        schedule: OpenSchedule,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.schedule = schedule
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None
        self._next = 0

    def next_start(self) -> float:
        """The next slot's intended start (epoch seconds); returns no earlier than that."""
        if self._start is None:
            self._start = self._clock()
        j = self._next
        self._next += 1
        intended = self._start + self.schedule.offset_s(j)
        delay = intended - self._clock()
        if delay > 0:
            self._sleep(delay)
        return intended


def corrected_latency_ms(
    *, intended_start: float, actual_start: float, response_ms: float
) -> float:
    """Latency from the intended start: the response time plus however late the request began."""
    return response_ms + max(0.0, actual_start - intended_start) * MS_PER_S
