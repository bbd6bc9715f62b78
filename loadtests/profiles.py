"""The load profiles: which requests each work item sends, for which payment of the pool.

A work item is one or more HTTP calls sent at the same moment. Every Locust process draws its
own items (process i of n takes pool items i, i+n, ...), so processes never share a payment
unless the profile wants them to (`hot_row`). Everything here is plain Python, free of Locust,
so that it can be tested and reused: the locustfile only sends what these sources hand out.

Each profile is one `Profile` object (its name, what it is, what its users send, the pool it
needs), registered in PROFILES at the end of this module.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from racebench.harness.gateway import Gateway
from racebench.harness.requests import Call
from racebench.loadtests.pool import Pool, order_id, razorpay_payment_id
from racebench.razorpay import CAPTURE_EVENTS, RazorpayEvent

VERIFY_PATH = "/payments/verify"
WEBHOOK_PATH = "/webhooks/razorpay"
JSON_HEADERS = {"Content-Type": "application/json"}

# hot_row: payments hot at once ("a handful"), and how long they stay hot. At a few hundred
# requests per second, 100 ms gives each hot payment tens of concurrent requests, the first of
# which race for the capture; the rest are replays of a captured payment.
HOT_ROWS = 5
HOT_WINDOW_S = 0.1
# hot_row: one request in this many is the webhook rather than the checkout callback.
HOT_WEBHOOK_EVERY = 4

# mixed: a share of customers close the tab before the callback; Razorpay redelivers a share of
# events (its retries after a slow 2xx); a few payments are declined once before they succeed.
MIXED_CLIENT_RETURNS = 0.9
MIXED_REDELIVERY = 0.1
MIXED_FAILED_FIRST = 0.05
MIXED_CAPTURE_EVENTS = CAPTURE_EVENTS
# mixed: deliveries of this many payments are shuffled together, so events of one payment arrive
# out of order and close together, interleaved with other payments' traffic.
MIXED_WINDOW = 4
# Items (calls) a mixed payment produces on average, for sizing its pool.
MIXED_CALLS_PER_PAYMENT = (
    MIXED_CLIENT_RETURNS + len(MIXED_CAPTURE_EVENTS) * (1 + MIXED_REDELIVERY) + MIXED_FAILED_FIRST
)


Item = tuple[Call, ...]


class CallSource(Protocol):
    """What builds a profile's calls: the reference service's (`Calls`), or a target's
    (harness/target/load.py, `TargetCalls`), for payment `payment_id` of the pool."""

    def verify(self, payment_id: int) -> Call: ...
    def webhook(self, payment_id: int, event_type: str, event_id: str) -> Call: ...


@dataclass(frozen=True, eq=False)  # identity: a profile is one registered object
class Profile:
    """One load profile: its name, what it is, what its users send, and the pool it needs.

    Adding one: write its `next_item` (a function of the process's ItemSource), make a Profile
    and add it to PROFILES below.
    """

    name: str
    summary: str
    next_item: Callable[[ItemSource], Item]
    # HTTP requests one work item sends (the open model's rate is in requests/s).
    requests_per_item: float = 1.0
    # Work items (calls) one payment of the pool takes on average: sizes the pool.
    calls_per_payment: float = 1.0
    # Payments a run needs, from (items, duration_s), when it is not items / calls_per_payment.
    pool_size_of: Callable[[float, float], int] | None = None

    def __str__(self) -> str:
        return self.name

    def pool_size(self, *, items: float, duration_s: float) -> int:
        """Payments a run of `items` work items (lasting `duration_s`) needs."""
        if self.pool_size_of is not None:
            return self.pool_size_of(items, duration_s)
        return max(1, int(items / self.calls_per_payment) + 1)


class Calls:
    """Builds signed calls with the gateway simulator (the same signatures as the race harness)."""

    def __init__(self, pool: Pool, gateway: Gateway | None = None) -> None:
        self.pool = pool
        self.gateway = gateway or Gateway()

    def verify(self, payment_id: int) -> Call:
        checkout = self.gateway.checkout(
            payment_id, order_id(payment_id), razorpay_payment_id(payment_id)
        )
        body = json.dumps(checkout.body(), separators=(",", ":")).encode()
        return Call("verify", VERIFY_PATH, body, JSON_HEADERS, payment_id)

    def webhook(self, payment_id: int, event_type: str, event_id: str) -> Call:
        delivery = self.gateway.event(
            event_type,
            order_id=order_id(payment_id),
            amount=self.pool.amount,
            payment_id=razorpay_payment_id(payment_id),
            event_id=event_id,
        )
        return Call(
            "webhook",
            WEBHOOK_PATH,
            delivery.body,
            delivery.headers(),
            payment_id,
            event_id,
            event_type,
        )


class ItemSource:
    """The work items of one Locust process, in the order its users take them."""

    def __init__(
        self,
        profile: Profile,
        pool: Pool,
        *,
        process_index: int = 0,
        processes: int = 1,
        seed: int = 0,
        hot_epoch: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.pool = pool
        self.process_index = process_index
        self.processes = processes
        self.calls: CallSource = Calls(pool)
        self.rng = random.Random(seed * 1_000_003 + process_index)
        self.clock = clock
        self.hot_epoch = clock() if hot_epoch is None else hot_epoch
        self.wrapped = 0  # items that reused a payment because the pool ran out
        self.sent = 0  # items of this process so far that drew their own payment
        self.pending: deque[Call] = deque()  # calls drawn ahead and not yet sent (mixed)
        self.unique = 0  # a counter for ids unique to this process (hot_row's event ids)

    def next_payment(self) -> int:
        """The next payment of this process's share of the pool (i, i+n, ...)."""
        k = self.process_index + self.processes * self.sent
        self.sent += 1
        payment_id, wrapped = self.pool.at(k)
        self.wrapped += wrapped
        return payment_id

    def next_item(self) -> Item:
        """The next work item of this process."""
        return self.profile.next_item(self)


# -- the profiles: what each one's users do ----------------------------------------------------


def _verify(source: ItemSource) -> Item:
    return (source.calls.verify(source.next_payment()),)


def _webhook(source: ItemSource) -> Item:
    pid = source.next_payment()
    return (source.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, f"evt_w{pid}"),)


def _contention(source: ItemSource) -> Item:
    pid = source.next_payment()
    return (
        source.calls.verify(pid),
        source.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, f"evt_c{pid}"),
    )


def hot_payment(source: ItemSource) -> int:
    """A payment of the current hot set (all processes agree on it through `hot_epoch`)."""
    epoch = int(max(0.0, source.clock() - source.hot_epoch) / HOT_WINDOW_S)
    payment_id, wrapped = source.pool.at(epoch * HOT_ROWS + source.rng.randrange(HOT_ROWS))
    source.wrapped += wrapped
    return payment_id


def _hot_row(source: ItemSource) -> Item:
    pid = hot_payment(source)
    source.unique += 1
    if source.unique % HOT_WEBHOOK_EVERY == 0:
        event_id = f"evt_h{source.process_index}x{source.unique}"
        return (source.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, event_id),)
    return (source.calls.verify(pid),)


def _hot_row_pool(items: float, duration_s: float) -> int:
    return (int(duration_s / HOT_WINDOW_S) + 1) * HOT_ROWS


def mixed_deliveries(source: ItemSource, pid: int) -> list[Call]:
    """Everything one payment of the mixed profile receives, before shuffling."""
    calls: list[Call] = []
    if source.rng.random() < MIXED_CLIENT_RETURNS:
        calls.append(source.calls.verify(pid))
    if source.rng.random() < MIXED_FAILED_FIRST:
        calls.append(source.calls.webhook(pid, RazorpayEvent.PAYMENT_FAILED, f"evt_m{pid}f"))
    for n, event_type in enumerate(MIXED_CAPTURE_EVENTS):
        delivery = source.calls.webhook(pid, event_type, f"evt_m{pid}e{n}")
        calls.append(delivery)
        if source.rng.random() < MIXED_REDELIVERY:
            calls.append(delivery)  # the same bytes and event id: a redelivery
    return calls


def _mixed(source: ItemSource) -> Item:
    if not source.pending:
        batch: list[Call] = []
        for _ in range(MIXED_WINDOW):
            batch.extend(mixed_deliveries(source, source.next_payment()))
        source.rng.shuffle(batch)
        source.pending.extend(batch)
    return (source.pending.popleft(),)


VERIFY = Profile("verify", "the customer's checkout callback, each on a distinct payment", _verify)
WEBHOOK = Profile(
    "webhook", "a signed payment.captured webhook, each on a distinct payment", _webhook
)
CONTENTION = Profile(
    "contention",
    "a payment's checkout callback and its webhook, at the same moment: the write-up's race,"
    " under load",
    _contention,
    requests_per_item=2.0,
)
HOT_ROW = Profile(
    "hot_row",
    f"every user on a handful ({HOT_ROWS}) of payments at a time, the 100-way case under load;"
    f" the hot set moves on every {HOT_WINDOW_S} s",
    _hot_row,
    pool_size_of=_hot_row_pool,
)
MIXED = Profile(
    "mixed",
    "what a real integration sees: most customers come back from checkout, Razorpay sends"
    " authorized, captured and order.paid in any order, redelivers some, a few fail first",
    _mixed,
    calls_per_payment=MIXED_CALLS_PER_PAYMENT,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (VERIFY, WEBHOOK, CONTENTION, HOT_ROW, MIXED)}
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)


def parse_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILE_NAMES)}"
        ) from None


def requests_per_item(profile: Profile) -> float:
    """How many HTTP requests one work item sends (the open model's rate is in requests/s)."""
    return profile.requests_per_item


def pool_size_for(profile: Profile, *, items: float, duration_s: float) -> int:
    """Payments a run of `items` work items (lasting `duration_s`) needs."""
    return profile.pool_size(items=items, duration_s=duration_s)
