"""What racebench sends a target, scenario by scenario: generated from the scenarios' own target
scripts (played against a recorder, nothing sent), so that docs/targets.md cannot drift from
what the scripts do. `racebench target sends` prints it; a test holds the docs to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from racebench.harness.requests import Answer, Request
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.race import Fault, TargetPayment, TargetRace
from racebench.razorpay import SETTLED_EVENTS
from racebench.scenarios import SCENARIOS
from racebench.scenarios.base import TARGET_NEEDS, Scenario

BEGIN = "<!-- racebench target sends: begin (generated; do not edit) -->"
END = "<!-- racebench target sends: end -->"


@dataclass
class Launch:
    """One launch of a script: its requests and how they were held."""

    requests: list[Request]
    how: str


class Recorder(TargetRace):
    """A TargetRace that records instead of sending: every launch answers 200 at once."""

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(SimpleNamespace(target=SimpleNamespace(spec=spec)))  # type: ignore[arg-type]
        self.launches: list[Launch] = []
        self.payments_made = 0

    async def invoice(self, amount: int) -> Any:
        return "invoice"

    async def payment(self, amount: int = 100_000, invoice_id: Any = None) -> TargetPayment:
        self.payments_made += 1
        n = self.payments_made
        return TargetPayment(
            {"payment_id": n, "order_id": f"order_{n}", "invoice_id": invoice_id}, amount
        )

    async def together(
        self,
        *requests: Request,
        ordered: bool = False,
        quorum: int | None = None,
        row: TargetPayment | None = None,
        fault: Fault | None = None,
    ) -> list[Answer]:
        held = "behind racebench's lock on the payment's row" if row else "at the barrier"
        how = [f"at once, held {held}"]
        if ordered:
            how = [f"one after the other, each once the one before is held {held}"]
        if quorum is not None:
            how.append(f"let go once {quorum} are held")
        if fault == "terminate":
            how.append("their database backends terminated where held")
        if fault == "outlast":
            how.append("held until the service's own lock timeout answers")
        self.launches.append(Launch(list(requests), "; ".join(how)))
        # A fault's request is shown refused (503), so that what follows one is recorded too.
        status = 200 if fault is None else 503
        return [Answer(r.actor, status, {}) for r in requests]

    async def then(self, request: Request) -> Answer:
        self.launches.append(Launch([request], "alone"))
        return Answer(request.actor, 200, {})

    async def must_end_captured(self, payment: TargetPayment) -> None:
        pass


def _what(request: Request) -> str:
    if request.event_type is None:
        return "checkout callback ([verify])"
    settled = " (a capture: 2xx means captured)" if request.event_type in SETTLED_EVENTS else ""
    forged = 400 in request.expect and 200 not in request.expect
    bad = " with a wrong signature (must be refused)" if forged else ""
    return f"webhook `{request.event_type}`{bad}{settled}"


async def record(scenario: Scenario, spec: TargetSpec) -> Recorder | str:
    """The scenario's target script played against a recorder (or why it does not run)."""
    found = scenario.on_target(spec)
    if isinstance(found, str):
        return found
    recorder = Recorder(spec)
    await found(recorder)
    return recorder


async def markdown(spec: TargetSpec) -> str:
    """The generated section of docs/targets.md: per scenario, its launches and requests."""
    lines = [BEGIN, ""]
    for scenario in SCENARIOS.values():
        recorded = await record(scenario, spec)
        lines.append(f"### {scenario.name}: {scenario.summary}")
        lines.append("")
        if isinstance(recorded, str):
            lines += [f"Not on a target: {recorded}.", ""]
            continue
        needs = ", ".join(
            re.findall(r"\[payment\]\.\w+", TARGET_NEEDS[n])[0] for n in scenario.target_needs
        )
        total = sum(len(launch.requests) for launch in recorded.launches)
        lines.append(
            f"{recorded.payments_made} payment(s), {total} request(s) in "
            f"{len(recorded.launches)} launch(es)"
            + (f"; needs {needs}" if needs else "")
            + (
                '. Races captures: a canary with `caught_by = "races"` must be caught here.'
                if scenario.catches_races
                else "."
            )
        )
        lines.append("")
        lines.append("| launch | actors | what each sends | how |")
        lines.append("|---|---|---|---|")
        for n, launch in enumerate(recorded.launches, start=1):
            lines.append(
                f"| {n} | {_actors(launch.requests)} | {_kinds(launch.requests)} | {launch.how} |"
            )
        lines.append("")
    lines += [
        "Every webhook is Razorpay's event, signed over its exact bytes with "
        "[razorpay].webhook_secret (`X-Razorpay-Signature`), its id in `X-Razorpay-Event-Id`; "
        f"its body's fields: {payload_fields(spec)} (`payload.order` with order.paid only).",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def _actors(requests: Sequence[Request]) -> str:
    names = [r.actor for r in requests]
    return ", ".join(names) if len(names) <= 6 else f"{names[0]} .. {names[-1]} ({len(names)})"


def _kinds(requests: Sequence[Request]) -> str:
    kinds: dict[str, int] = {}
    for request in requests:
        kinds[_what(request)] = kinds.get(_what(request), 0) + 1
    return "; ".join(f"{n} x {k}" if n > 1 else k for k, n in kinds.items())


def payload_fields(spec: TargetSpec) -> str:
    """The fields of a webhook's body, as the gateway simulator builds it (order.paid adds
    payload.order.entity)."""
    recorder = Recorder(spec)
    payment = TargetPayment({"payment_id": 1, "order_id": "order_1"}, 100_000)
    body = json.loads(recorder.event(payment, "order.paid").body)
    return ", ".join(_paths(body))


def _paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]
