"""Schemathesis against a real `racebench serve`: every answer is the one /openapi.json documents.

Checked: no 5xx, only documented status codes, documented content types, bodies matching their
response schemas. Signed paths are signed (verify's razorpay_signature, the webhook's
X-Razorpay-Signature over the exact bytes sent), and part of the cases aim at real pending
payments, so the success paths are reached and not only the 400s.

The suite runs a few cases per operation; for a long run set RACEBENCH_SCHEMATHESIS_EXAMPLES
(examples per operation), e.g. 1100 for more than 5,000 cases:

    RACEBENCH_SCHEMATHESIS_EXAMPLES=1100 .venv/bin/pytest -q -s \
        tests/reference_service/test_schemathesis.py

The tally of cases and answers per operation is printed at the end (-s shows it).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from racebench.harness.gateway import Gateway, hmac_sha256_hex
from racebench.harness.service_process import RunningService, running_service
from racebench.razorpay import RazorpayEvent
from racebench.reference_service.app import create_app
from racebench.reference_service.openapi import SIGNATURE_HEADER, WEBHOOK_PATH

EXAMPLES = int(os.environ.get("RACEBENCH_SCHEMATHESIS_EXAMPLES", "25"))
# Every check schemathesis has, but these (RACEBENCH_SCHEMATHESIS_ALL_CHECKS=1 runs them too):
EXCLUDED = {
    # A schema cannot say "correctly signed": a schema-valid verify or webhook with a wrong
    # signature is rightly refused with 400.
    "positive_data_acceptance": "signatures are not expressible in a schema",
}
# negative_data_rejection runs: the webhook's schema requires only what the service reads, so
# a schema-violating body is refused and every field Razorpay sends but the service ignores
# is documented as optional and untyped.
schemathesis.checks.load_all_checks()
CHECKS = [
    check
    for check in schemathesis.checks.CHECKS.get_all()
    if os.environ.get("RACEBENCH_SCHEMATHESIS_ALL_CHECKS") or check.__name__ not in EXCLUDED
]
assert {c.__name__ for c in CHECKS} >= {
    not_a_server_error.__name__,
    status_code_conformance.__name__,
    content_type_conformance.__name__,
    response_schema_conformance.__name__,
}
# Real pending payments the cases may aim at (a share of the cases, chosen by the case's data).
PAYMENTS = 40

schema = schemathesis.openapi.from_dict(create_app().openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@dataclass
class Tally:
    cases: int = 0
    answers: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    server_errors: int = 0
    undocumented: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, case: schemathesis.Case, status: int) -> None:
        self.cases += 1
        self.answers[(case.operation.label, case.method.upper(), status)] += 1
        self.server_errors += status >= 500
        # A probe with another method than the operation's (405) is not the operation's answer.
        same_method = case.method.lower() == case.operation.method.lower()
        documented = case.operation.definition.raw["responses"]
        self.undocumented += same_method and str(status) not in documented

    def report(self) -> str:
        lines = [
            f"schemathesis: {self.cases} cases, {self.server_errors} server errors, "
            f"{self.undocumented} undocumented status codes, {len(self.failures)} failed checks"
        ]
        lines += [
            f"  {op} [{m}]: {status} x{n}" for (op, m, status), n in sorted(self.answers.items())
        ]
        lines += [f"  FAILED {failure}" for failure in self.failures[:20]]
        return "\n".join(lines)


TALLY = Tally()


class SigningSession(requests.Session):
    """Signs a webhook over the exact bytes that leave, as Razorpay does."""

    def __init__(self, webhook_secret: str) -> None:
        super().__init__()
        self.webhook_secret = webhook_secret

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = request.url or ""
        # An empty signature is a schema-violating (negative) case: it is left as generated.
        if url.split("?")[0].endswith(WEBHOOK_PATH) and request.headers.get(SIGNATURE_HEADER):
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else body
            request.headers[SIGNATURE_HEADER] = hmac_sha256_hex(self.webhook_secret, raw)
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class Target:
    service: RunningService
    session: SigningSession
    payments: list[dict[str, Any]]


@pytest.fixture(scope="module")
def target(database_url: str, gateway: Gateway) -> Iterator[Target]:
    with running_service(strategy="for_update", database_url=database_url) as service:
        with httpx.Client(base_url=service.base_url, timeout=10) as http:
            payments = [
                http.post("/payments", json={"amount": 1_000 + i}).json() for i in range(PAYMENTS)
            ]
        with SigningSession(gateway.webhook_secret) as session:
            yield Target(service, session, payments)
    print("\n" + TALLY.report())


def aim(case: schemathesis.Case, target: Target, gateway: Gateway) -> None:
    """Point half the cases at a real payment, and sign what must be signed."""
    body = case.body
    if not isinstance(body, dict):
        return
    rng = random.Random(json.dumps(body, sort_keys=True, default=str))
    payment = rng.choice(target.payments) if rng.random() < 0.5 else None
    if case.operation.path == "/payments/verify":
        if payment is not None:
            body["internal_payment_id"] = payment["id"]
            body["razorpay_order_id"] = payment["razorpay_order_id"]
        order_id, payment_id = body.get("razorpay_order_id"), body.get("razorpay_payment_id")
        if isinstance(order_id, str) and isinstance(payment_id, str) and rng.random() < 0.9:
            body["razorpay_signature"] = hmac_sha256_hex(
                gateway.key_secret, f"{order_id}|{payment_id}".encode()
            )
    elif case.operation.path == WEBHOOK_PATH and payment is not None:
        body["event"] = rng.choice(list(RazorpayEvent)).value
        entity = _dig(body, "payload", "payment", "entity")
        if entity is not None:
            entity["order_id"] = payment["razorpay_order_id"]
            if rng.random() < 0.8:
                entity["amount"] = payment["amount"]
                entity["currency"] = payment["currency"]
    # Assigned again so that schemathesis re-checks whether the case still violates the schema.
    case.body = body


def _dig(value: Any, *keys: str) -> dict[str, Any] | None:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_answers_as_documented(
    case: schemathesis.Case, target: Target, gateway: Gateway
) -> None:
    aim(case, target, gateway)
    response = case.call(base_url=target.service.base_url, session=target.session, timeout=30)
    TALLY.record(case, response.status_code)
    try:
        case.validate_response(response, checks=CHECKS)
    except BaseException as failure:
        TALLY.failures.append(f"{case.operation.label} {response.status_code}: {failure!r}"[:300])
        raise
