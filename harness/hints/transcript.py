"""What a hint is read from: each request type's transactions, as SQL, and the unique keys of
the tables they touch.

Two sources:
- `drive(spec, variant)`: the target's service started behind racebench's proxy, and each
  request type sent once, one at a time: making the payments (when the service makes them,
  `[payment.http]`), the checkout callback (verify), the webhook's capture event, and its
  failure event, each about a payment of its own on one shared invoice (when
  the target can make one). The proxy's transcript attributes every statement to the request
  that was in flight when it ran.
- `from_log(...)`: a PostgreSQL statement log (`log_statement = 'all'`) from a real
  environment; each backend's transactions, named by the backend (`pid 4242`), since a log
  does not say which request ran them.

The unique keys come from `pg_index` (and the primary keys with them), read straight from
the database: a check-then-insert is safe when a unique index covers what was checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from pglast.parser import ParseError

from racebench.harness.explore.behind import behind_proxy
from racebench.harness.explore.proxy import ConnectionClosed, Proxy, Statement
from racebench.harness.gateway import RazorpayEvent
from racebench.harness.hints.accesses import accesses, facts
from racebench.harness.hints.statement_log import DEFAULT_PREFIX, read_log_file
from racebench.harness.requests import Request
from racebench.harness.target.file import TargetSpec, UnknownValue, render_sql
from racebench.harness.target.race import TargetPayment, TargetRace

# The request types a capture path has, in the order they are driven (the payment is made first:
# by the service when the target makes it over HTTP, else straight into the database).
MAKE_PAYMENT = "make a payment"
VERIFY = "verify"
WEBHOOK_CAPTURED = "webhook payment.captured"
WEBHOOK_FAILED = "webhook payment.failed"
# The request types that capture (the ones a double capture is made of).
CAPTURES = (VERIFY, WEBHOOK_CAPTURED)
AMOUNT = 100_000


@dataclass(frozen=True)
class Transaction:
    """One transaction's statements, in order, and the request type that ran it."""

    request: str
    statements: tuple[str, ...]
    index: int = 0  # the n-th transaction of that request (a log: the line it starts on)
    failed: bool = False  # it ended in an error or a ROLLBACK
    session: str | None = None  # a log: the backend ("pid 4242") that ran it
    connection: str | None = None  # the connection (proxy) or backend (log) it ran on


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    references: str  # the table
    referenced: str  # its column


@dataclass
class Schema:
    """What the database enforces and declares, for the tables of the transcript."""

    # table -> the column sets a unique index (or the primary key) makes unique
    unique_keys: dict[str, list[frozenset[str]]] = field(default_factory=dict)
    primary_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)  # single-column ones
    types: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> type

    def references(self, table: str, to: str) -> list[ForeignKey]:
        return [k for k in self.foreign_keys if k.table == table and k.references == to]

    def type_of(self, table: str, column: str) -> str | None:
        return self.types.get(table, {}).get(column)


@dataclass
class Transcript:
    """Every transaction seen, and what the database enforces."""

    source: str  # "proxy" or "log"
    transactions: list[Transaction]
    schema: Schema = field(default_factory=Schema)
    # the table the target's [payment].sql inserts into (None: unknown)
    payment_table: str | None = None
    answers: dict[str, int] = field(default_factory=dict)  # request type -> HTTP status

    @property
    def unique_keys(self) -> dict[str, list[frozenset[str]]]:
        return self.schema.unique_keys


UNIQUE_KEYS_SQL = """
SELECT c.relname AS table_name, bool_or(i.indisprimary) AS primary_key,
       array_agg(a.attname::text ORDER BY array_position(i.indkey, a.attnum)) AS columns
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
WHERE i.indisunique AND i.indpred IS NULL
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
GROUP BY c.relname, i.indexrelid
"""


FOREIGN_KEYS_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       rc.relname AS references, ra.attname AS referenced
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class rc ON rc.oid = k.confrelid
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
COLUMN_TYPES_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""


async def read_schema(db: asyncpg.Connection) -> Schema:
    """The unique keys (pg_index; partial indexes left out: they do not make a column unique
    everywhere), primary keys, single-column foreign keys and column types of every table."""
    schema = Schema()
    for row in await db.fetch(UNIQUE_KEYS_SQL):
        schema.unique_keys.setdefault(row["table_name"], []).append(frozenset(row["columns"]))
        if row["primary_key"]:
            schema.primary_keys[row["table_name"]] = tuple(row["columns"])
    for row in await db.fetch(FOREIGN_KEYS_SQL):
        schema.foreign_keys.append(
            ForeignKey(row["table_name"], row["column_name"], row["references"], row["referenced"])
        )
    for row in await db.fetch(COLUMN_TYPES_SQL):
        schema.types.setdefault(row["table_name"], {})[row["column_name"]] = row["type"]
    return schema


def transactions_of(request: str, statements: Iterable[Statement]) -> list[Transaction]:
    """The proxy's statements, grouped into transactions by connection and transaction index,
    in the order each began."""
    grouped: dict[tuple[int, int], list[Statement]] = {}
    for stmt in statements:
        if stmt.txn is None or not stmt.sql.strip():
            continue
        grouped.setdefault((stmt.connection_id, stmt.txn), []).append(stmt)
    found: list[Transaction] = []
    for n, stmts in enumerate(grouped.values()):
        failed = any(s.error is not None for s in stmts) or any(
            (s.tag or "").upper() == "ROLLBACK" for s in stmts
        )
        connection = str(stmts[0].connection_id)
        sqls = tuple(s.sql for s in stmts if s.part == 0)  # a Query of several: its whole text
        found.append(Transaction(request, sqls, n, failed, connection=connection))
    return found


def _requests(race: TargetRace, payments: Sequence[TargetPayment]) -> list[tuple[str, Request]]:
    verify, captured, failed = payments
    return [
        (VERIFY, race.verify("client", verify)),
        (WEBHOOK_CAPTURED, race.webhook("webhook", captured)),
        (WEBHOOK_FAILED, race.webhook("webhook", failed, RazorpayEvent.PAYMENT_FAILED)),
    ]


async def drive(
    spec: TargetSpec,
    variant: str | None,
    *,
    database_url: str | None = None,
    workers: int | None = None,
) -> Transcript:
    """Start the target's service behind the proxy, send each request type once, one at a
    time, and return what each ran (see the module's docstring)."""
    async with behind_proxy(spec, variant, database_url=database_url, workers=workers) as behind:
        session, proxy = behind.session, behind.proxy
        session.launcher = None
        race = TargetRace(session)
        await _quiet(proxy)
        start = len(proxy.statements)
        if spec.can_share_invoice():
            payments = await race.payments_of_one_invoice(3 * AMOUNT, 3)
        else:
            payments = [await race.payment(AMOUNT) for _ in range(3)]
        await _quiet(proxy)
        transactions: list[Transaction] = []
        if spec.payment.http is not None:  # made by the service: its transactions count too
            transactions += transactions_of(MAKE_PAYMENT, proxy.statements[start:])
        answers: dict[str, int] = {}
        for name, request in _requests(race, payments):
            start = len(proxy.statements)
            answer = await race.then(request)
            await _quiet(proxy)
            answers[name] = answer.status
            transactions += transactions_of(name, proxy.statements[start:])
        schema = await read_schema(session.db)
    return Transcript(
        "proxy",
        transactions,
        schema,
        payment_table=payment_table(spec) or first_read(transactions, VERIFY),
        answers=answers,
    )


def first_read(transactions: Sequence[Transaction], request: str) -> str | None:
    """The table the request's first writing transaction reads first: the payment, for a
    capture (when the target makes its payments over HTTP, and no INSERT names the table)."""
    for txn in transactions:
        if txn.request != request or not any(facts(s).writes for s in txn.statements):
            continue
        for sql in txn.statements:
            for access in facts(sql).accesses:
                if access.kind == "read":
                    return access.table
    return None


async def _quiet(proxy: Proxy) -> None:
    """Until every statement the proxy has seen has ended (a request's last COMMIT may still
    be on its way back when the answer arrives)."""
    for stmt in list(proxy.statements):
        if stmt.ended is None and not stmt.aborted:
            with contextlib.suppress(ConnectionClosed):
                await stmt.wait()


def from_log(
    path: Path, prefix: str = DEFAULT_PREFIX, schema: Schema | None = None
) -> tuple[Transcript, int]:
    """A statement log's transactions (each named by the client's application_name, when the
    prefix has %a, else "backend"; its index is the log line it starts on), and the lines
    read. Without `schema` the unique keys are unknown, and every check-then-insert is hinted."""
    logged = read_log_file(path, prefix)
    transactions = [
        Transaction(
            t.application or "backend",
            t.statements,
            t.line,
            t.failed,
            session=f"pid {t.pid}",
            connection=f"pid {t.pid}",
        )
        for t in logged
    ]
    with path.open("rb") as lines:
        count = sum(1 for _ in lines)
    return Transcript("log", transactions, schema or Schema()), count


def payment_table(spec: TargetSpec) -> str | None:
    """The table [payment].sql inserts into (None when the payment is made over HTTP)."""
    if spec.payment.sql is None:
        return None
    try:
        sql = render_sql(spec.payment.sql, {"run": "r", "n": 1, "amount": 1, "invoice_id": 1})
        found = accesses(sql)
    except (UnknownValue, ParseError):
        return None
    for access in found:
        if access.kind == "insert":
            return access.table
    return None


__all__ = [
    "CAPTURES",
    "MAKE_PAYMENT",
    "VERIFY",
    "WEBHOOK_CAPTURED",
    "WEBHOOK_FAILED",
    "ForeignKey",
    "Schema",
    "Transaction",
    "Transcript",
    "drive",
    "first_read",
    "from_log",
    "payment_table",
    "read_schema",
    "transactions_of",
]
