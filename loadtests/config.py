"""What one `racebench bench` run is asked to do: strategies, load, durations, rounds.

Parsing the command line's texts (durations, strategy lists) and sizing the pool of pending
payments a cell needs live here, apart from running anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from racebench.loadtests.pool import Pool
from racebench.loadtests.profiles import Profile, pool_size_for, requests_per_item
from racebench.loadtests.system import ReferenceSystem, System
from racebench.names import pick
from racebench.reference_service.strategies import STRATEGIES, import_strategy, is_custom

# Locust takes a second or two to start (more with --processes); hot_row's moving hot set and
# the pool must cover that too.
LOCUST_STARTUP_ALLOWANCE_S = 10.0
# Warm-up: enough requests to open the service's pooled connections and warm its code paths,
# few enough to cost a second or two.
WARMUP_REQUESTS = 300

# How the arms (strategies) of a round run: one after the other in the same order every round
# (alternate), in A B B A order (abba: a warm-up or drift cost lands on both sides alike), or
# all at the same time, each with its own service and database, driven by one Locust run whose
# users are split evenly among them (concurrent: the machine's noise, and the load generator's,
# hits every arm alike, which pairs them best; loadtests/paired.py).
Order = Literal["concurrent", "abba", "alternate"]
ORDERS: tuple[Order, ...] = get_args(Order)

# `racebench bench` with no --order, --rounds or --duration: the design that resolves
# differences. 28 concurrent rounds of 6 s gave a for_update A/A throughput 95% interval of
# +-1.25% in 247 s on this 2-core machine (README, "Seeing a 2% difference"). --faults runs one
# arm at a time (each on a server it restarts), so it keeps the one-after-the-other defaults.
DEFAULT_ORDER: Order = "concurrent"
DEFAULT_FAULTS_ORDER: Order = "alternate"
DEFAULT_ROUNDS: dict[Order, int] = {"concurrent": 28, "abba": 3, "alternate": 3}
DEFAULT_DURATION: dict[Order, str] = {"concurrent": "6s", "abba": "30s", "alternate": "30s"}


def bench_plan(
    order: Order | None, rounds: int | None, duration: str | None, *, faults: bool
) -> tuple[Order, int, str]:
    """What a bench runs when an option is not given: the order (concurrent; alternate with
    --faults), then that order's rounds and round duration."""
    chosen = order or (DEFAULT_FAULTS_ORDER if faults else DEFAULT_ORDER)
    return chosen, rounds or DEFAULT_ROUNDS[chosen], duration or DEFAULT_DURATION[chosen]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)?")


def parse_duration(text: str) -> float:
    """Seconds in '30s', '2m', '1m30s', '1h', '500ms' or a bare number of seconds."""
    text = text.strip().lower()
    position, total = 0, 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"not a duration: {text!r} (try 30s, 2m, 1m30s)")
        total += float(match.group(1)) * scale[match.group(2)]
        position = match.end()
    if total <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total


def parse_strategies(text: str) -> list[str]:
    """Registered names, `all`, or a class of one's own as `package.module:Class`. A name may
    come twice (an A/A comparison: the same strategy under two labels, see `labels`)."""
    names = pick(
        text,
        list(STRATEGIES),
        "strategy",
        repeats=True,
        also=is_custom,
        hint=" (or all, or package.module:Class)",
    )
    for name in names:
        if is_custom(name):
            import_strategy(name)  # UnknownStrategy (a ValueError) says why it cannot be used
    return names


def labels(strategies: list[str]) -> list[str]:
    """Each arm's label: the strategy's name (a class of one's own: its class name), with #2,
    #3 ... on a name that comes again, so that `for_update,for_update` is an A/A comparison."""
    seen: dict[str, int] = {}
    out = []
    for name in strategies:
        base = name.partition(":")[2] if is_custom(name) else name
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


@dataclass(frozen=True)
class BenchConfig:
    strategies: list[str]
    profile: Profile
    users: int
    rate: float | None  # open model: requests per second
    duration_s: float
    rounds: int
    workers: int
    processes: int
    run_dir: Path
    database_url: str | None
    warmup_requests: int = WARMUP_REQUESTS
    faults: bool = False  # kill the service's backends, restart the database (loadtests.faults)
    kill_every_s: float = 3.0
    order: Order = "alternate"
    system: System = field(default_factory=ReferenceSystem)

    @property
    def labels(self) -> list[str]:
        return labels(self.strategies)

    def arm_order(self, round_no: int) -> list[tuple[str, str]]:
        """The (label, strategy) pairs of round `round_no`, in the order they run (one after
        the other; abba reverses every second round)."""
        arms = list(zip(self.labels, self.strategies, strict=True))
        if self.order == "abba" and round_no % 2 == 0:
            arms.reverse()
        return arms

    @property
    def cells(self) -> int:
        """Strategy x round: the units of work, each one result."""
        return len(self.strategies) * self.rounds

    @property
    def item_rate(self) -> float | None:
        """Open model: work items per second (a contention item is two requests)."""
        return None if self.rate is None else self.rate / requests_per_item(self.profile)

    def pools(self) -> tuple[Pool, Pool]:
        """(the measured run's pool, the warm-up's pool right after it)."""
        items_per_s = self.item_rate or self.system.items_per_s
        seconds = self.duration_s + LOCUST_STARTUP_ALLOWANCE_S
        size = pool_size_for(self.profile, items=items_per_s * seconds, duration_s=seconds)
        pool = Pool(1, size)
        return pool, pool.after(self.warmup_requests)
