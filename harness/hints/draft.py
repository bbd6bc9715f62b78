"""From a transcript to a target file: the barrier tables and first invariants a team would
otherwise have to guess (racebench hints, and `racebench target init`).

Barrier tables: the tables the capture transactions (the checkout callback's and the capture
event's) write after their first read. racebench's barrier holds every write to them, so both
requests read before either writes. A table written before the read (a webhook's event claim)
is left out, since holding it would hold the request before it reads, and so is one written in
a transaction of its own.

Draft invariants, from what the writes imply (each returns the rows that break it, for the
run's payments `$1`):
- ONE_<TABLE>_PER_PAYMENT: a table the capture inserts one row into per payment (a column of
  it references the payment's table; literal values it inserts narrow it, such as
  `to_status = 'captured'`) holds at most one such row per payment;
- <TABLE>_<COLUMN>_DRIFT: a running total the capture updates on a table the payment belongs
  to (the invoice's paid amount) equals the sum of the amounts inserted per capture;
- <TABLE>_NOT_CAPTURED: that row exists only for a payment that is captured, by the target's
  own [payment].captured_sql.

These are drafts: they name your tables and columns, and are worth a read. `racebench target
init` writes them into a file that `racebench race --target` runs as it is.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from racebench.harness.hints.accesses import Access, facts
from racebench.harness.hints.transcript import CAPTURES, Schema, Transaction, Transcript

NUMERIC = ("bigint", "integer", "smallint", "numeric", "double precision", "real")


@dataclass(frozen=True)
class DraftInvariant:
    code: str
    name: str
    sql: str
    why: str  # what in the transcript it was drafted from


@dataclass(frozen=True)
class Drafts:
    barrier_tables: tuple[str, ...]
    why_barrier: str
    invariants: tuple[DraftInvariant, ...]


def _capture_writes(transcript: Transcript) -> list[tuple[Transaction, list[Access]]]:
    """Each capture transaction's writes that come after its first read, in order."""
    found: list[tuple[Transaction, list[Access]]] = []
    for txn in transcript.transactions:
        if txn.request not in CAPTURES and transcript.source == "proxy":
            continue
        read = False
        writes: list[Access] = []
        for sql in txn.statements:
            for access in facts(sql).accesses:
                if access.kind == "read":
                    read = True
                elif read:
                    writes.append(access)
        if writes:
            found.append((txn, writes))
    return found


def barrier_tables(transcript: Transcript) -> tuple[str, ...]:
    """See the module's docstring."""
    before: set[str] = set()
    for txn in transcript.transactions:
        if txn.request not in CAPTURES and transcript.source == "proxy":
            continue
        for sql in txn.statements:
            accesses = facts(sql).accesses
            if any(a.kind == "read" for a in accesses):
                break
            before |= {a.table for a in accesses if a.kind != "read"}
    tables: list[str] = []
    for _, writes in _capture_writes(transcript):
        for access in writes:
            if access.table not in tables and access.table not in before:
                tables.append(access.table)
    return tuple(tables)


def _reference(schema: Schema, table: str, payment_table: str) -> str | None:
    """The column of `table` that references the payment's table (its foreign key, or else a
    column named payment_id)."""
    keys = schema.references(table, payment_table)
    if keys:
        return keys[0].column
    if "payment_id" in schema.types.get(table, {}):
        return "payment_id"
    return None


def _ids_type(schema: Schema, payment_table: str) -> str:
    key = schema.primary_keys.get(payment_table, ("id",))
    return schema.type_of(payment_table, key[0]) or "bigint"


def _where(alias: str, constants: dict[str, str]) -> str:
    return "".join(
        f" AND {alias}{column} = {_literal(value)}" for column, value in sorted(constants.items())
    )


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _code(*parts: str) -> str:
    return "_".join(p.upper() for p in parts if p)


def draft_invariants(
    transcript: Transcript, captured_sql: str | None = None
) -> tuple[DraftInvariant, ...]:
    """See the module's docstring."""
    schema, payment = transcript.schema, transcript.payment_table
    if payment is None:
        return ()
    ids = f"$1::{_ids_type(schema, payment)}[]"
    payment_key = schema.primary_keys.get(payment, ("id",))[0]
    per_payment: list[tuple[Access, str]] = []  # (insert, its column naming the payment)
    totals: list[tuple[str, str]] = []  # (table, running-total column) the capture updates
    for _, writes in _capture_writes(transcript):
        for access in writes:
            if access.kind == "insert" and access.table != payment and not access.on_conflict:
                column = _reference(schema, access.table, payment)
                known = [a.table for a, _ in per_payment]
                if column is not None and access.table not in known:
                    per_payment.append((access, column))
            if access.kind == "update" and access.table != payment:
                for column in sorted(access.columns):
                    kind = schema.type_of(access.table, column) or ""
                    if kind.startswith(NUMERIC) and (access.table, column) not in totals:
                        totals.append((access.table, column))
    drafts: list[DraftInvariant] = []
    for insert, column in per_payment:
        where = _where("", insert.constants)
        drafts.append(
            DraftInvariant(
                _code("one", insert.table, "per_payment"),
                f"two {insert.table} rows for one payment (captured twice)",
                f"SELECT {column} AS payment_id, count(*) AS rows FROM {insert.table}\n"
                f"WHERE {column} = ANY({ids}){where}\n"
                f"GROUP BY {column} HAVING count(*) > 1",
                f"the capture inserts a {insert.table} row per payment ({column})",
            )
        )
    drafts += _drifts(schema, payment, payment_key, ids, per_payment, totals)
    if captured_sql is not None and per_payment:
        insert, column = per_payment[0]
        drafts.append(
            DraftInvariant(
                _code(insert.table, "not_captured"),
                f"a {insert.table} row for a payment that is not captured",
                f"SELECT r.{column} AS payment_id, count(*) AS rows FROM {insert.table} r\n"
                f"WHERE r.{column} = ANY({ids}){_where('r.', insert.constants)}\n"
                f"  AND r.{column} NOT IN (SELECT payment_id FROM ({captured_sql}) AS captured)\n"
                f"GROUP BY r.{column}",
                f"the capture inserts {insert.table} and [payment].captured_sql says which "
                "payments are captured",
            )
        )
    return tuple(drafts)


def _drifts(
    schema: Schema,
    payment: str,
    payment_key: str,
    ids: str,
    per_payment: list[tuple[Access, str]],
    totals: list[tuple[str, str]],
) -> list[DraftInvariant]:
    drafts: list[DraftInvariant] = []
    for table, total in totals:
        link = schema.references(payment, table)
        if not link:
            continue
        owner_key, payment_column = link[0].referenced, link[0].column
        source = _amount_source(schema, total, per_payment)
        if source is None:
            continue
        insert, column, amount = source
        drafts.append(
            DraftInvariant(
                _code(table, total, "drift"),
                f"{table}.{total} is not the sum of its {insert.table}.{amount} (a lost update)",
                f"SELECT t.{owner_key} AS {table}_id, t.{total}, "
                f"coalesce(sum(r.{amount}), 0) AS summed\n"
                f"FROM {table} t\n"
                f"JOIN {payment} p ON p.{payment_column} = t.{owner_key}\n"
                f"LEFT JOIN {insert.table} r ON r.{column} = p.{payment_key}"
                f"{_where('r.', insert.constants)}\n"
                f"WHERE t.{owner_key} IN (SELECT {payment_column} FROM {payment} "
                f"WHERE {payment_key} = ANY({ids}))\n"
                f"GROUP BY t.{owner_key}, t.{total} "
                f"HAVING t.{total} <> coalesce(sum(r.{amount}), 0)",
                f"the capture updates {table}.{total} and inserts {insert.table}.{amount} per "
                "payment",
            )
        )
    return drafts


def _amount_source(
    schema: Schema, total: str, per_payment: list[tuple[Access, str]]
) -> tuple[Access, str, str] | None:
    """The per-payment insert and its numeric column that add up to `total`: the one whose
    name shares a word with it (paid_paise and amount_paise), else the only one."""
    words = set(total.split("_"))
    candidates: list[tuple[Access, str, str]] = []
    for insert, column in per_payment:
        keys = {k.column for k in schema.foreign_keys if k.table == insert.table}
        for name in sorted(insert.columns - keys - {column}):
            if (schema.type_of(insert.table, name) or "").startswith(NUMERIC):
                candidates.append((insert, column, name))
    for candidate in candidates:
        if words & set(candidate[2].split("_")):
            return candidate
    return candidates[0] if len(candidates) == 1 else None


def drafts_of(transcript: Transcript, captured_sql: str | None = None) -> Drafts:
    tables = barrier_tables(transcript)
    return Drafts(
        tables,
        "the tables the capture transactions write after their first read",
        draft_invariants(transcript, captured_sql),
    )


# -- the target file --------------------------------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()  # TOML's own date and time values
    if isinstance(value, str):
        if "\n" in value and "'''" not in value:
            return "'''\n" + value + "'''"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _table(header: str, table: dict[str, Any], lines: list[str]) -> None:
    lines.append(f"[{header}]")
    nested = {k: v for k, v in table.items() if isinstance(v, dict) and header != "variants"}
    for key, value in table.items():
        if key not in nested:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in nested.items():
        lines.append("")
        _table(f"{header}.{_key(key)}", value, lines)


def target_file(raw: dict[str, Any], drafts: Drafts, source: str, how: str) -> str:
    """The skeleton's settings (`raw`, as read from its TOML), with the drafted barrier tables
    and invariants in place of its own."""
    lines = [
        f"# Written by `racebench target init` from {source}: {how}.",
        "# barrier_tables and [[invariants]] are drafts; read them, then:",
        "#     racebench target check THIS_FILE",
        "#     racebench race --target THIS_FILE",
    ]
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    for key, value in raw.items():
        if key not in tables and key != "invariants":
            lines.append(f"{_key(key)} = {_value(value)}")
    database = dict(tables.get("database", {}))
    database["barrier_tables"] = list(drafts.barrier_tables)
    tables["database"] = database
    for key, value in tables.items():
        lines.append("")
        if key == "database":
            lines.append(f"# barrier_tables: {drafts.why_barrier}.")
        _table(_key(key), value, lines)
    for inv in drafts.invariants:
        lines += ["", f"# drafted: {inv.why}", "[[invariants]]"]
        lines += [f"code = {_value(inv.code)}", f"name = {_value(inv.name)}"]
        lines.append(f"sql = {_value(inv.sql)}")
    return "\n".join(lines) + "\n"


__all__ = [
    "DraftInvariant",
    "Drafts",
    "barrier_tables",
    "draft_invariants",
    "drafts_of",
    "target_file",
]
