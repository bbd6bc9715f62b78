"""What "exactly once" means, as SQL: one detector per anomaly, each returning its evidence.

Every invariant is a query that returns the violating rows; no rows means it holds. A check
returns a fixed shape (`valid`, `anomaly_types`, `anomalies`), in the manner of Elle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from racebench.harness.database import connect, parse_url


@dataclass(frozen=True, slots=True)
class Invariant:
    code: str
    name: str
    doc: str
    sql: str
    ledger: str = ""
    """What the client was told, bound to $1: "events" (the webhook event ids answered 2xx) or
    "captures" (the payment ids of every capture answered 2xx); "" for none."""


INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        "DOUBLE_CAPTURE",
        "Double capture",
        "A payment moved to captured more than once: both paths read `pending` and both wrote.",
        """
        SELECT payment_id, count(*) AS captures, array_agg(source ORDER BY id) AS sources
        FROM payment_events WHERE to_status = 'captured'
        GROUP BY payment_id HAVING count(*) > 1 ORDER BY payment_id
        """,
    ),
    Invariant(
        "DUPLICATE_ALLOCATION",
        "Duplicate allocation",
        "A payment was allocated to its invoice more than once: the invoice was paid twice.",
        """
        SELECT payment_id, count(*) AS allocations, sum(amount) AS allocated
        FROM payment_allocations GROUP BY payment_id HAVING count(*) > 1 ORDER BY payment_id
        """,
    ),
    Invariant(
        "DUPLICATE_RECEIPT",
        "Duplicate receipt",
        "More than one receipt went out for one payment.",
        """
        SELECT payment_id, count(*) AS receipts
        FROM receipts GROUP BY payment_id HAVING count(*) > 1 ORDER BY payment_id
        """,
    ),
    Invariant(
        "INVOICE_DRIFT",
        "Invoice drift (lost update)",
        "An invoice's amount_paid differs from the sum of its allocations, or its status does "
        "not follow from amount_paid: a read-modify-write lost another capture's update.",
        """
        SELECT i.id AS invoice_id, i.amount_paid, coalesce(a.allocated, 0) AS allocated,
               i.status
        FROM invoices i
        LEFT JOIN (SELECT invoice_id, sum(amount) AS allocated
                   FROM payment_allocations GROUP BY invoice_id) a ON a.invoice_id = i.id
        WHERE i.amount_paid <> coalesce(a.allocated, 0)
           OR i.status <> CASE WHEN i.amount_paid >= i.amount THEN 'paid'
                               WHEN i.amount_paid > 0 THEN 'partially_paid'
                               ELSE 'unpaid' END
        ORDER BY i.id
        """,
    ),
    Invariant(
        "PARTIAL_CAPTURE",
        "Partial capture",
        "A captured payment lacks its allocation, its receipt or its captured event (or a "
        "payment that is not captured has them).",
        """
        SELECT p.id AS payment_id, p.status,
               (SELECT count(*) FROM payment_allocations a WHERE a.payment_id = p.id)
                   AS allocations,
               (SELECT count(*) FROM receipts r WHERE r.payment_id = p.id) AS receipts,
               (SELECT count(*) FROM payment_events e
                 WHERE e.payment_id = p.id AND e.to_status = 'captured') AS captured_events
        FROM payments p
        WHERE (p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM payment_allocations a WHERE a.payment_id = p.id)
           OR (p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM receipts r WHERE r.payment_id = p.id)
           OR (p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM payment_events e
                    WHERE e.payment_id = p.id AND e.to_status = 'captured')
        ORDER BY p.id
        """,
    ),
    Invariant(
        "STATUS_REGRESSION",
        "Status regression",
        "A captured payment moved back (a stale `failed` overwrote `captured`).",
        """
        SELECT p.id AS payment_id, p.status,
               array_agg(e.from_status || '->' || e.to_status ORDER BY e.id) AS transitions
        FROM payments p JOIN payment_events e ON e.payment_id = p.id
        GROUP BY p.id, p.status
        HAVING (bool_or(e.to_status = 'captured') AND p.status <> 'captured')
            OR bool_or(e.from_status = 'captured' AND e.to_status <> 'captured')
        ORDER BY p.id
        """,
    ),
    Invariant(
        "WEBHOOK_LOST",
        "Webhook lost",
        "A delivery was answered 2xx but is not kept in webhook_events.",
        """
        SELECT acked.event_id, acked.deliveries, count(w.id) AS kept
        FROM (SELECT event_id, count(*) AS deliveries
              FROM unnest($1::text[]) AS event_id GROUP BY event_id) acked
        LEFT JOIN webhook_events w ON w.event_id = acked.event_id
        GROUP BY acked.event_id, acked.deliveries
        HAVING count(w.id) < acked.deliveries
        ORDER BY acked.event_id
        """,
        ledger="events",
    ),
    Invariant(
        "ACKNOWLEDGED_LOST",
        "Acknowledged capture lost",
        "A capture was answered 2xx (a checkout callback, or a payment.captured delivery) but "
        "its payment is not captured: the client was told something the database lost.",
        """
        SELECT acked.payment_id, acked.answers, p.status
        FROM (SELECT payment_id, count(*) AS answers
              FROM unnest($1::bigint[]) AS payment_id GROUP BY payment_id) acked
        LEFT JOIN payments p ON p.id = acked.payment_id
        WHERE p.status IS DISTINCT FROM 'captured'
        ORDER BY acked.payment_id
        """,
        ledger="captures",
    ),
    Invariant(
        "DUPLICATE_EVENT_EFFECT",
        "Duplicate event effect",
        "One webhook event id was applied more than once.",
        """
        SELECT substr(source, 9) AS event_id, count(*) AS effects,
               array_agg(payment_id ORDER BY id) AS payment_ids
        FROM payment_events WHERE source LIKE 'webhook:%'
        GROUP BY source HAVING count(*) > 1 ORDER BY 1
        """,
    ),
)
BY_CODE = {inv.code: inv for inv in INVARIANTS}
CODES: tuple[str, ...] = tuple(BY_CODE)

# Evidence rows kept per anomaly type in a report; the count is always exact.
MAX_EVIDENCE_ROWS = 20


@dataclass
class CheckResult:
    """The fixed shape of a check: valid, anomaly_types, anomalies (code -> evidence rows)."""

    valid: bool
    anomaly_types: list[str]
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        """A human summary that shows the evidence, not just 'failed'."""
        if self.valid:
            return "all invariants hold"
        lines = []
        for code in self.anomaly_types:
            inv = BY_CODE[code]
            lines.append(f"{inv.name} ({code}): {self.counts[code]} violation(s)")
            lines.extend(f"    {row}" for row in self.anomalies[code][:5])
        return "\n".join(lines)


async def check_connection(
    conn: asyncpg.Connection,
    *,
    acknowledged_event_ids: Sequence[str] = (),
    acknowledged_captures: Sequence[int] = (),
    codes: Iterable[str] = CODES,
) -> CheckResult:
    """Run the invariants on an open asyncpg connection.

    `acknowledged_event_ids`: the webhook deliveries answered 2xx; `acknowledged_captures`:
    the payment id of every capture answered 2xx (the client's ledger)."""
    anomalies: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    ledgers: dict[str, list[Any]] = {
        "events": list(acknowledged_event_ids),
        "captures": list(acknowledged_captures),
    }
    for code in codes:
        inv = BY_CODE[code]
        args = (ledgers[inv.ledger],) if inv.ledger else ()
        rows = await conn.fetch(inv.sql, *args)
        if rows:
            counts[code] = len(rows)
            anomalies[code] = [_jsonable(dict(r)) for r in rows[:MAX_EVIDENCE_ROWS]]
    return CheckResult(not anomalies, list(anomalies), anomalies, counts)


async def check(database_url: str, *, acknowledged_event_ids: Sequence[str] = ()) -> CheckResult:
    """Connect to `database_url` and run every invariant."""
    conn = await connect(parse_url(database_url))
    try:
        return await check_connection(conn, acknowledged_event_ids=acknowledged_event_ids)
    finally:
        await conn.close()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in row.items()}


LOST_CAPTURES_SQL = """
SELECT count(*) FROM (SELECT DISTINCT id FROM unnest($1::bigint[]) AS acked(id)) acked
LEFT JOIN payments p ON p.id = acked.id
WHERE p.status IS DISTINCT FROM 'captured'
"""


async def lost_captures(database_url: str, acknowledged_payment_ids: Sequence[int]) -> int:
    """The ledger check: how many payments a verify answer 200 called captured are not
    captured in the database (0 unless an acknowledged capture was lost)."""
    conn = await connect(parse_url(database_url))
    try:
        return int(await conn.fetchval(LOST_CAPTURES_SQL, list(acknowledged_payment_ids)))
    finally:
        await conn.close()
