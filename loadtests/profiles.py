"""The load profiles: which requests each work item sends, for which payment of the pool.

A work item is one or more HTTP calls sent at the same moment. Every Locust process draws its
own items (process i of n takes pool items i, i+n, ...), so processes never share a payment
unless the profile wants them to (`hot_row`). Everything here is plain Python, free of Locust,
so that it can be tested and reused: the locustfile only sends what these sources hand out.

- `verify`: the customer's checkout callback, each on a distinct payment.
- `webhook`: a signed `payment.captured` webhook, each on a distinct payment.
- `contention`: a payment's checkout callback and its webhook, at the same moment: the
  documents' race, under load.
- `hot_row`: every user on a handful of payments at a time (the 100-way case under load); the
  hot set moves on every HOT_WINDOW_S, so there is always a pending payment to fight over.
- `mixed`: what a real integration sees: most customers come back from checkout, Razorpay sends
  authorized, captured and order.paid in any order, redelivers some of them, and a few
  payments fail first.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from racebench.harness.gateway import Gateway
from racebench.loadtests.pool import Pool, order_id, razorpay_payment_id
from racebench.reference_service.events import CAPTURE_EVENTS, RazorpayEvent

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


class Profile(StrEnum):
    VERIFY = "verify"
    WEBHOOK = "webhook"
    CONTENTION = "contention"
    HOT_ROW = "hot_row"
    MIXED = "mixed"


PROFILE_NAMES: tuple[str, ...] = tuple(p.value for p in Profile)


def parse_profile(name: str) -> Profile:
    try:
        return Profile(name)
    except ValueError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILE_NAMES)}"
        ) from None


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of a work item, ready to send."""

    kind: str  # "verify" or "webhook": the Locust name and the tally's outcome prefix
    path: str
    body: bytes
    headers: dict[str, str]
    payment_id: int
    event_id: str | None = None  # webhooks: recorded when answered 2xx (WEBHOOK_LOST)


Item = tuple[Call, ...]


def requests_per_item(profile: Profile) -> float:
    """How many HTTP requests one work item sends (the open model's rate is in requests/s)."""
    return 2.0 if profile is Profile.CONTENTION else 1.0


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
            "webhook", WEBHOOK_PATH, delivery.body, delivery.headers(), payment_id, event_id
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
        self.calls = Calls(pool)
        self.rng = random.Random(seed * 1_000_003 + process_index)
        self.clock = clock
        self.hot_epoch = clock() if hot_epoch is None else hot_epoch
        self.wrapped = 0  # items that reused a payment because the pool ran out
        self._taken = 0  # items of this process so far
        self._pending: deque[Call] = deque()  # mixed: shuffled deliveries not yet sent
        self._unique = 0  # hot_row: event ids unique to this process

    def _next_payment(self) -> int:
        k = self.process_index + self.processes * self._taken
        self._taken += 1
        payment_id, wrapped = self.pool.at(k)
        self.wrapped += wrapped
        return payment_id

    def next_item(self) -> Item:
        """The next work item of this process."""
        match self.profile:
            case Profile.VERIFY:
                return (self.calls.verify(self._next_payment()),)
            case Profile.WEBHOOK:
                pid = self._next_payment()
                return (self.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, f"evt_w{pid}"),)
            case Profile.CONTENTION:
                pid = self._next_payment()
                return (
                    self.calls.verify(pid),
                    self.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, f"evt_c{pid}"),
                )
            case Profile.HOT_ROW:
                return (self._hot_call(),)
            case Profile.MIXED:
                if not self._pending:
                    self._refill_mixed()
                return (self._pending.popleft(),)
        raise AssertionError(f"unhandled profile {self.profile}")

    def hot_payment(self) -> int:
        """A payment of the current hot set (all processes agree on it through `hot_epoch`)."""
        epoch = int(max(0.0, self.clock() - self.hot_epoch) / HOT_WINDOW_S)
        payment_id, wrapped = self.pool.at(epoch * HOT_ROWS + self.rng.randrange(HOT_ROWS))
        self.wrapped += wrapped
        return payment_id

    def _hot_call(self) -> Call:
        pid = self.hot_payment()
        self._unique += 1
        if self._unique % HOT_WEBHOOK_EVERY == 0:
            event_id = f"evt_h{self.process_index}x{self._unique}"
            return self.calls.webhook(pid, RazorpayEvent.PAYMENT_CAPTURED, event_id)
        return self.calls.verify(pid)

    def _refill_mixed(self) -> None:
        batch: list[Call] = []
        for _ in range(MIXED_WINDOW):
            batch.extend(self.mixed_deliveries(self._next_payment()))
        self.rng.shuffle(batch)
        self._pending.extend(batch)

    def mixed_deliveries(self, pid: int) -> list[Call]:
        """Everything one payment of the mixed profile receives, before shuffling."""
        calls: list[Call] = []
        if self.rng.random() < MIXED_CLIENT_RETURNS:
            calls.append(self.calls.verify(pid))
        if self.rng.random() < MIXED_FAILED_FIRST:
            calls.append(self.calls.webhook(pid, RazorpayEvent.PAYMENT_FAILED, f"evt_m{pid}f"))
        for n, event_type in enumerate(MIXED_CAPTURE_EVENTS):
            delivery = self.calls.webhook(pid, event_type, f"evt_m{pid}e{n}")
            calls.append(delivery)
            if self.rng.random() < MIXED_REDELIVERY:
                calls.append(delivery)  # the same bytes and event id: a redelivery
        return calls


def pool_size_for(profile: Profile, *, items: float, duration_s: float) -> int:
    """Payments a run of `items` work items (lasting `duration_s`) needs."""
    if profile is Profile.HOT_ROW:
        return (int(duration_s / HOT_WINDOW_S) + 1) * HOT_ROWS
    per_payment = MIXED_CALLS_PER_PAYMENT if profile is Profile.MIXED else 1.0
    return max(1, int(items / per_payment) + 1)
