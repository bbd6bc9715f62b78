"""Requests: one actor's HTTP request in a launch, its answer, and the client-side ledger line
it leaves; and one call of a load profile's work item.

Shared by the white-box runner (harness/runner.py), target mode (harness/target/) and the load
profiles (loadtests/): a scenario builds Requests, a launch turns them into Answers, and every
answer is a line of the ledger (`Told`) that ACKNOWLEDGED_LOST holds the database to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A request whose every answer is acceptable (a fault's first delivery: 503, 500, or a 2xx
# that the ledger then holds the database to).
ANY_STATUS: tuple[int, ...] = tuple(range(100, 600))


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of one actor."""

    actor: str
    method: str
    path: str
    json_body: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None  # a webhook delivery's X-Razorpay-Event-Id
    event_type: str | None = None  # a webhook delivery's event
    captures: int | None = None  # the payment this request captures (a 2xx means captured)
    payment: int | None = None  # the payment it is about (the row a hold_lock step locks)
    words: str = ""  # how the timeline names it
    expect: tuple[int, ...] = ()
    """The statuses this request may answer; empty: any 2xx. Anything else is an error."""

    def accepts(self, status: int) -> bool:
        return status in self.expect if self.expect else 200 <= status < 300

    def expectation(self) -> str:
        return " or ".join(map(str, self.expect)) if self.expect else "2xx"


@dataclass(frozen=True, slots=True)
class Answer:
    actor: str
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class Told:
    """One line of the client-side ledger: what one actor's request was answered."""

    actor: str
    words: str
    status: int
    outcome: str
    event_id: str | None
    captures: int | None  # the payment it captures, if it is a capture

    @property
    def acknowledged_capture(self) -> int | None:
        """The payment this answer says is captured (a 2xx capture of a known payment)."""
        if self.captures is None or not 200 <= self.status < 300 or self.outcome == "unmatched":
            return None
        return self.captures


def brief(body: Any) -> str:
    """An answer in a few words: `captured (replay)`, `processed`, `signature_invalid`."""
    if isinstance(body, dict):
        if "error" in body and isinstance(body["error"], dict):
            return str(body["error"].get("code"))
        replay = " (replay)" if body.get("replayed") else ""
        return f"{body.get('status', '?')}{replay}"
    return str(body)[:40]


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of a load profile's work item, ready to send: the body already bytes
    (what Locust sends as it is), the payment it is about, and its event if it is a webhook."""

    kind: str  # "verify" or "webhook": the Locust name and the tally's outcome prefix
    path: str
    body: bytes
    headers: dict[str, str]
    payment_id: int
    event_id: str | None = None  # webhooks: recorded when answered 2xx (WEBHOOK_LOST)
    event_type: str | None = None  # webhooks: the event
