"""What "exactly once" means, as SQL: one detector per anomaly, each returning its evidence.

Every invariant is a query that returns the violating rows; no rows means it holds. A check
returns a fixed shape (`valid`, `anomaly_types`, `anomalies`), in the manner of Elle, and
carries the invariants it found broken, so that whoever shows it names them as they were
defined (racebench's, below, or a target's own).

INVARIANTS are written against the contract's tables (docs/contracts.md): the reference
service's, and any target that keeps the same tables (`builtin_invariants` in a target file).
Their $1 narrows them to a run's payments; NULL checks every row (a white-box run starts on
empty tables).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from racebench.harness.database import connect, parse_url
from racebench.results import Incidents, Invariant, Ledger

# A payment narrowed to the run: $1 is the run's payment ids, or NULL for every payment.
_IN_RUN = "($1::bigint[] IS NULL OR {column} = ANY($1::bigint[]))"

INVARIANTS: tuple[Invariant, ...] = (
    Invariant(
        code="DOUBLE_CAPTURE",
        name="Double capture",
        doc="A payment moved to captured more than once: both paths read `pending` and both wrote.",
        sql=f"""
        SELECT e.payment_id, count(*) AS captures, array_agg(e.source ORDER BY e.id) AS sources,
               p.invoice_id, p.amount, p.currency
        FROM payment_events e JOIN payments p ON p.id = e.payment_id
        WHERE e.to_status = 'captured' AND {_IN_RUN.format(column="e.payment_id")}
        GROUP BY e.payment_id, p.invoice_id, p.amount, p.currency
        HAVING count(*) > 1 ORDER BY e.payment_id
        """,
    ),
    Invariant(
        code="DUPLICATE_ALLOCATION",
        name="Duplicate allocation",
        doc="A payment was allocated to its invoice more than once: the invoice was paid twice.",
        sql=f"""
        SELECT a.payment_id, count(*) AS allocations, sum(a.amount) AS allocated,
               p.invoice_id, p.amount, p.currency
        FROM payment_allocations a JOIN payments p ON p.id = a.payment_id
        WHERE {_IN_RUN.format(column="a.payment_id")}
        GROUP BY a.payment_id, p.invoice_id, p.amount, p.currency
        HAVING count(*) > 1 ORDER BY a.payment_id
        """,
    ),
    Invariant(
        code="DUPLICATE_RECEIPT",
        name="Duplicate receipt",
        doc="More than one receipt went out for one payment.",
        sql=f"""
        SELECT r.payment_id, count(*) AS receipts, p.invoice_id, p.amount, p.currency
        FROM receipts r JOIN payments p ON p.id = r.payment_id
        WHERE {_IN_RUN.format(column="r.payment_id")}
        GROUP BY r.payment_id, p.invoice_id, p.amount, p.currency
        HAVING count(*) > 1 ORDER BY r.payment_id
        """,
    ),
    Invariant(
        code="INVOICE_DRIFT",
        name="Invoice drift (lost update)",
        doc="An invoice's amount_paid differs from the sum of its allocations, or its status "
        "does not follow from amount_paid: a read-modify-write lost another capture's update.",
        sql="""
        SELECT i.id AS invoice_id, i.amount_paid, coalesce(a.allocated, 0) AS allocated,
               i.status, i.currency
        FROM invoices i
        LEFT JOIN (SELECT invoice_id, sum(amount) AS allocated
                   FROM payment_allocations GROUP BY invoice_id) a ON a.invoice_id = i.id
        WHERE ($1::bigint[] IS NULL
               OR i.id IN (SELECT invoice_id FROM payments WHERE id = ANY($1::bigint[])))
          AND (i.amount_paid <> coalesce(a.allocated, 0)
               OR i.status <> CASE WHEN i.amount_paid >= i.amount THEN 'paid'
                                   WHEN i.amount_paid > 0 THEN 'partially_paid'
                                   ELSE 'unpaid' END)
        ORDER BY i.id
        """,
    ),
    Invariant(
        code="PARTIAL_CAPTURE",
        name="Partial capture",
        doc="A captured payment lacks its allocation, its receipt or its captured event (or a "
        "payment that is not captured has them).",
        sql=f"""
        SELECT p.id AS payment_id, p.status,
               (SELECT count(*) FROM payment_allocations a WHERE a.payment_id = p.id)
                   AS allocations,
               (SELECT count(*) FROM receipts r WHERE r.payment_id = p.id) AS receipts,
               (SELECT count(*) FROM payment_events e
                 WHERE e.payment_id = p.id AND e.to_status = 'captured') AS captured_events
        FROM payments p
        WHERE {_IN_RUN.format(column="p.id")}
          AND ((p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM payment_allocations a WHERE a.payment_id = p.id)
               OR (p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM receipts r WHERE r.payment_id = p.id)
               OR (p.status = 'captured') <> EXISTS
                  (SELECT 1 FROM payment_events e
                    WHERE e.payment_id = p.id AND e.to_status = 'captured'))
        ORDER BY p.id
        """,
    ),
    Invariant(
        code="STATUS_REGRESSION",
        name="Status regression",
        doc="A captured payment moved back (a stale `failed` overwrote `captured`).",
        sql=f"""
        SELECT p.id AS payment_id, p.status,
               array_agg(e.from_status || '->' || e.to_status ORDER BY e.id) AS transitions
        FROM payments p JOIN payment_events e ON e.payment_id = p.id
        WHERE {_IN_RUN.format(column="p.id")}
        GROUP BY p.id, p.status
        HAVING (bool_or(e.to_status = 'captured') AND p.status <> 'captured')
            OR bool_or(e.from_status = 'captured' AND e.to_status <> 'captured')
        ORDER BY p.id
        """,
    ),
    Invariant(
        code="WEBHOOK_LOST",
        name="Webhook lost",
        doc="A delivery was answered 2xx but is not kept in webhook_events.",
        sql="""
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
        code="ACKNOWLEDGED_LOST",
        name="Acknowledged capture lost",
        doc="A capture was answered 2xx (a checkout callback, or a payment.captured delivery) "
        "but its payment is not captured: the client was told something the database lost.",
        sql="""
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
        code="DUPLICATE_EVENT_EFFECT",
        name="Duplicate event effect",
        doc="One webhook event id was applied more than once.",
        sql=f"""
        SELECT substr(source, 9) AS event_id, count(*) AS effects,
               array_agg(payment_id ORDER BY id) AS payment_ids
        FROM payment_events
        WHERE source LIKE 'webhook:%' AND {_IN_RUN.format(column="payment_id")}
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
    """The fixed shape of a check: valid, anomaly_types, anomalies (code -> evidence rows), and
    the invariants behind them, as they were defined (racebench's, or a target's own)."""

    valid: bool
    anomaly_types: list[str]
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    incidents: Incidents | None = None  # the violations grouped (None: not counted)
    invariants: dict[str, Invariant] = field(default_factory=dict)  # code -> the one broken

    def name_of(self, code: str) -> str:
        """The invariant's own name (its code when the check did not say)."""
        invariant = self.invariants.get(code)
        return invariant.name if invariant is not None else code

    def message(self) -> str:
        """A human summary that shows the evidence, not just 'failed'."""
        if self.valid:
            return "all invariants hold"
        lines = []
        if self.incidents is not None:
            incidents = describe_incidents(self.incidents)
            if incidents:
                lines.append(f"Incidents: {incidents}; the evidence:")
        for code in self.anomaly_types:
            lines.append(f"{self.name_of(code)} ({code}): {self.counts[code]} violation(s)")
            lines.extend(f"    {row}" for row in self.anomalies[code][:5])
        return "\n".join(lines)


@dataclass(frozen=True)
class Ledgers:
    """What the client was told: the ledger invariants' $1."""

    events: Sequence[str] = ()  # webhook event ids answered 2xx, once per answer
    captures: Sequence[int] = ()  # the payment id of every capture answered 2xx

    def of(self, ledger: Ledger) -> list[Any]:
        return list(self.events if ledger == "events" else self.captures)


@dataclass
class LedgerLog:
    """The client ledger, checked after every launch: a capture answered 2xx whose payment is
    not captured right then is a lie the client was told, even when a later request (a
    redelivery) repairs it before the run's final check. Every entry found lost is kept, and
    merged into the final check under the ledger invariant's own code."""

    invariants: Sequence[Invariant]  # the ledger invariants (their `ledger` is set)
    lost: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)

    async def check(self, conn: asyncpg.Connection, ledgers: Ledgers) -> None:
        """The acknowledgements of one launch (`ledgers`) against the database, now."""
        if not self.invariants or not (ledgers.events or ledgers.captures):
            return
        found = await check_invariants(conn, self.invariants, ledgers=ledgers)
        for code, rows in found.anomalies.items():
            for row in rows:
                self.lost.setdefault(code, {})[_entry(row)] = row

    def merge(self, result: CheckResult) -> CheckResult:
        """`result` (the run's final check) with every entry found lost after a launch."""
        for code, lost in self.lost.items():
            rows = {_entry(r): r for r in result.anomalies.get(code, [])}
            rows.update({k: v for k, v in lost.items() if k not in rows})
            if code not in result.anomalies:
                result.anomaly_types.append(code)
                result.invariants[code] = next(i for i in self.invariants if i.code == code)
            result.anomalies[code] = list(rows.values())
            result.counts[code] = len(rows)
            result.valid = False
        return result


def _entry(row: dict[str, Any]) -> Any:
    return row.get("payment_id", row.get("event_id"))


async def check_invariants(
    conn: asyncpg.Connection,
    invariants: Iterable[Invariant],
    *,
    payments: Sequence[int] | None = None,
    ledgers: Ledgers = Ledgers(),
) -> CheckResult:
    """Run `invariants` on an open connection: each gets the run's `payments` as $1 (None: every
    row), a ledger invariant its ledger instead. A query that fails raises asyncpg's error."""
    anomalies: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    broken: dict[str, Invariant] = {}
    every_row: dict[str, list[dict[str, Any]]] = {}
    for inv in invariants:
        rows = await _violations(conn, inv, payments, ledgers)
        if rows:
            counts[inv.code] = len(rows)
            anomalies[inv.code] = [_jsonable(r) for r in rows[:MAX_EVIDENCE_ROWS]]
            every_row[inv.code] = rows
            broken[inv.code] = inv
    incidents = count_incidents(group_incidents(every_row))
    return CheckResult(not anomalies, list(anomalies), anomalies, counts, incidents, broken)


async def _violations(
    conn: asyncpg.Connection,
    inv: Invariant,
    payments: Sequence[int] | None,
    ledgers: Ledgers,
) -> list[dict[str, Any]]:
    if not inv.ledger:
        return [
            dict(r)
            for r in await _fetch(conn, inv.sql, list(payments) if payments is not None else None)
        ]
    ledger = ledgers.of(inv.ledger)
    if inv.kind == "violations":
        return [dict(r) for r in await _fetch(conn, inv.sql, ledger)]
    if not ledger:
        return []
    # ledger_kept: the query names the entries it kept; the others were lost.
    column = "event_id" if inv.ledger == "events" else "payment_id"
    kept = {r[column] for r in await _fetch(conn, inv.sql, ledger)}
    answers: dict[Any, int] = {}
    for entry in ledger:
        answers[entry] = answers.get(entry, 0) + 1
    return [
        {column: entry, "answers": n, "kept": False}
        for entry, n in answers.items()
        if entry not in kept
    ]


# How many parameters each invariant's query takes, once known (the SQL is the key).
_PARAMETERS: dict[str, int] = {}


async def _fetch(conn: asyncpg.Connection, sql: str, argument: Any) -> list[asyncpg.Record]:
    """The query with `argument` as $1, if it takes one (a query of one's own may not)."""
    if sql not in _PARAMETERS:
        _PARAMETERS[sql] = len((await conn.prepare(sql)).get_parameters())
    if _PARAMETERS[sql]:
        return list(await conn.fetch(sql, argument))
    return list(await conn.fetch(sql))


async def check_connection(
    conn: asyncpg.Connection,
    *,
    acknowledged_event_ids: Sequence[str] = (),
    acknowledged_captures: Sequence[int] = (),
    codes: Iterable[str] = CODES,
) -> CheckResult:
    """racebench's invariants on an open connection, over every row (a white-box run).

    `acknowledged_event_ids`: the webhook deliveries answered 2xx; `acknowledged_captures`:
    the payment id of every capture answered 2xx (the client's ledger)."""
    return await check_invariants(
        conn,
        [BY_CODE[code] for code in codes],
        ledgers=Ledgers(acknowledged_event_ids, acknowledged_captures),
    )


async def check(database_url: str, *, acknowledged_event_ids: Sequence[str] = ()) -> CheckResult:
    """Connect to `database_url` and run every invariant."""
    conn = await connect(parse_url(database_url))
    try:
        return await check_connection(conn, acknowledged_event_ids=acknowledged_event_ids)
    finally:
        await conn.close()


# --- incidents: the violations grouped by what they happened to ---------------------------

# The column of each code's rows that says how many times the payment was captured.
CAPTURE_COUNT_COLUMNS = {
    "DOUBLE_CAPTURE": "captures",
    "DUPLICATE_ALLOCATION": "allocations",
    "DUPLICATE_RECEIPT": "receipts",
}


@dataclass
class Incident:
    """One payment (or, when no payment of it broke an invariant, one invoice; or one webhook
    delivery) that something went wrong with, and every violation that shows it."""

    payment_id: int | None = None
    invoice_id: int | None = None
    codes: list[str] = field(default_factory=list)
    captures: int = 1  # how many times the payment was captured, as the evidence shows
    amount: int | None = None  # minor units (paise)
    currency: str | None = None
    event_id: str | None = None

    def add(self, code: str, row: Mapping[str, Any]) -> None:
        if code not in self.codes:
            self.codes.append(code)
        if self.invoice_id is None and row.get("invoice_id") is not None:
            self.invoice_id = int(row["invoice_id"])
        if self.amount is None and row.get("amount") is not None:
            self.amount = int(row["amount"])
        if self.currency is None and row.get("currency") is not None:
            self.currency = str(row["currency"])
        column = CAPTURE_COUNT_COLUMNS.get(code)
        if column is not None and row.get(column) is not None:
            self.captures = max(self.captures, int(row[column]))

    @property
    def captured_twice(self) -> bool:
        return self.payment_id is not None and self.captures > 1

    @property
    def at_risk(self) -> int:
        """The amount captured more than once, in minor units (0 when the amount is unknown)."""
        return (self.amount or 0) * (self.captures - 1)


def group_incidents(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Incident]:
    """The violation rows (code -> rows, as the invariant queries return them) grouped by what
    they happened to: every row that names a payment (`payment_id`, or `payment_ids` for an
    event applied twice) joins that payment's incident; a row that names only an invoice
    (INVOICE_DRIFT) joins the incidents of that invoice's payments, or becomes the invoice's
    own incident when none of its payments broke anything; any other row is an incident of its
    own. Payments first, in id order, then invoices, then the rest."""
    payments: dict[int, Incident] = {}
    invoice_rows: list[tuple[str, Mapping[str, Any]]] = []
    others: list[Incident] = []
    for code, code_rows in rows.items():
        for row in code_rows:
            ids = _payment_ids(row)
            if ids:
                for payment_id in ids:
                    payments.setdefault(payment_id, Incident(payment_id)).add(code, row)
            elif row.get("invoice_id") is not None:
                invoice_rows.append((code, row))
            else:
                other = Incident(event_id=_text(row.get("event_id")))
                other.add(code, row)
                others.append(other)
    invoices: dict[int, Incident] = {}
    for code, row in invoice_rows:
        invoice_id = int(row["invoice_id"])
        on_invoice = [i for i in payments.values() if i.invoice_id == invoice_id]
        for incident in on_invoice or [invoices.setdefault(invoice_id, Incident())]:
            incident.add(code, row)
    return [*(payments[k] for k in sorted(payments)), *invoices.values(), *others]


def count_incidents(incidents: Iterable[Incident]) -> Incidents:
    """Incidents as counts: payments, payments captured twice, invoices, money at risk."""
    items = list(incidents)
    at_risk: dict[str, int] = {}
    for incident in items:
        if incident.at_risk and incident.currency is not None:
            at_risk[incident.currency] = at_risk.get(incident.currency, 0) + incident.at_risk
    return Incidents(
        payments=sum(1 for i in items if i.payment_id is not None),
        captured_twice=sum(1 for i in items if i.captured_twice),
        invoices=len({i.invoice_id for i in items if i.invoice_id is not None}),
        at_risk=at_risk,
        unattributed=sum(1 for i in items if i.payment_id is None and i.invoice_id is None),
    )


# Minor units per major unit: every currency the reference service takes (INR: paise) has 100.
MINOR_UNITS = 100


def money(currency: str, minor: int) -> str:
    """`INR 1,234.00` from 123400 paise."""
    major, cents = divmod(abs(minor), MINOR_UNITS)
    return f"{currency} {'-' if minor < 0 else ''}{major:,}.{cents:02d}"


def describe_incidents(incidents: Incidents) -> str:
    """`11,972 payments captured twice or more, 11,972 invoices affected, INR 5,986,000.00 at
    risk`: each payment and invoice counted once, however many invariants it broke ("" when
    nothing was affected)."""
    parts = []
    if incidents.captured_twice:
        parts.append(f"{_plural(incidents.captured_twice, 'payment')} captured twice or more")
    others = incidents.payments - incidents.captured_twice
    if others:
        other = "other payment" if incidents.captured_twice else "payment"
        parts.append(f"{_plural(others, other)} wrong")
    if incidents.invoices:
        parts.append(f"{_plural(incidents.invoices, 'invoice')} affected")
    if incidents.at_risk:
        at_risk = " + ".join(money(c, m) for c, m in sorted(incidents.at_risk.items()))
        parts.append(f"{at_risk} at risk")
    if incidents.unattributed:
        parts.append(_plural(incidents.unattributed, "other incident"))
    return ", ".join(parts)


def describe_violations(violations: Mapping[str, int], incidents: Incidents | None) -> str:
    """A run's violations in one line: the incidents first, the per-code counts after them as
    evidence, never added up. `no violation` when every invariant held."""
    codes = ", ".join(
        f"{code} {n:,}"
        for code, n in sorted(violations.items(), key=lambda cn: (-cn[1], cn[0]))
        if n
    )
    if not codes:
        return "no violation"
    if incidents is None:
        return f"incidents not counted; evidence: {codes}"
    return f"{describe_incidents(incidents)}; evidence: {codes}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _payment_ids(row: Mapping[str, Any]) -> list[int]:
    if row.get("payment_id") is not None:
        return [int(row["payment_id"])]
    return [int(p) for p in row.get("payment_ids") or () if p is not None]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    """A value as evidence shows it: sum() over bigints is a Decimal (200000, not 2E+5)."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


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
