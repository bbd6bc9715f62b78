"""What one statement reads and writes, by table and column, parsed with PostgreSQL's own parser
(pglast, libpg_query): the ground a hint stands on (racebench hints, issue 18; work in progress).

`accesses(sql)` walks the statement and every statement nested in it (CTEs, subqueries):
- a SELECT reads the columns it names from the tables in its FROM, `locked` when it carries
  FOR UPDATE / FOR SHARE (any strength);
- an UPDATE writes its SET columns and reads the columns of its WHERE (its guard), and of the
  expressions it assigns;
- an INSERT writes its columns (`on_conflict` when it has ON CONFLICT); a DELETE writes the row.
Column names are as written (unqualified); a `*` reads every column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pglast.ast as ast
from pglast import parse_sql
from pglast.visitors import Visitor

Kind = Literal["read", "update", "insert", "delete"]


@dataclass
class Access:
    """One table touched by one (sub)statement."""

    table: str
    kind: Kind
    columns: set[str] = field(default_factory=set)  # read (SELECT) or written (UPDATE/INSERT)
    guard: set[str] = field(default_factory=set)  # the WHERE's columns (UPDATE, DELETE, SELECT)
    locked: bool = False  # a SELECT ... FOR UPDATE / FOR SHARE
    on_conflict: bool = False  # an INSERT ... ON CONFLICT


class _Columns(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        last = (node.fields or ("?",))[-1]
        self.names.add("*" if isinstance(last, ast.A_Star) else str(getattr(last, "sval", last)))


def _columns(node: Any) -> set[str]:
    if node is None:
        return set()
    found = _Columns()
    found(node)
    return found.names


def _tables(from_clause: Any) -> list[str]:
    names: list[str] = []

    class Tables(Visitor):  # type: ignore[misc]
        def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
            names.append(str(node.relname))

    if from_clause:
        Tables()(from_clause)
    return names


def _relname(relation: ast.RangeVar | None) -> str:
    return str(relation.relname) if relation is not None else "?"


def _walk(node: Any, out: list[Access], ctes: set[str]) -> None:
    with_clause = getattr(node, "withClause", None)
    if with_clause is not None:
        for cte in with_clause.ctes:
            ctes.add(cte.ctename)
            _walk(cte.ctequery, out, ctes)
    if isinstance(node, ast.SelectStmt):
        if node.op is not None and node.larg is not None:  # UNION, INTERSECT, EXCEPT
            _walk(node.larg, out, ctes)
            _walk(node.rarg, out, ctes)
            return
        locked = bool(node.lockingClause)
        read = _columns(node.targetList) | _columns(node.whereClause)
        for table in _tables(node.fromClause):
            if table not in ctes:
                out.append(Access(table, "read", read, _columns(node.whereClause), locked=locked))
        for sub in _subqueries(node):
            _walk(sub, out, ctes)
    elif isinstance(node, ast.UpdateStmt):
        written = {t.name for t in node.targetList or ()}
        out.append(Access(_relname(node.relation), "update", written, _columns(node.whereClause)))
        for sub in _subqueries(node):
            _walk(sub, out, ctes)
    elif isinstance(node, ast.InsertStmt):
        written = {c.name for c in node.cols or ()}
        out.append(
            Access(
                _relname(node.relation),
                "insert",
                written,
                on_conflict=node.onConflictClause is not None,
            )
        )
        if node.selectStmt is not None:
            _walk(node.selectStmt, out, ctes)
    elif isinstance(node, ast.DeleteStmt):
        out.append(Access(_relname(node.relation), "delete", guard=_columns(node.whereClause)))


def _subqueries(node: Any) -> list[Any]:
    found: list[Any] = []

    class Subs(Visitor):  # type: ignore[misc]
        def visit_SubLink(self, ancestors: Any, sub: ast.SubLink) -> None:
            found.append(sub.subselect)

    for part in ("targetList", "whereClause", "fromClause"):
        value = getattr(node, part, None)
        if value:
            Subs()(value)
    return found


def accesses(sql: str) -> list[Access]:
    """Every table each statement of `sql` reads or writes (an empty list for BEGIN, SET...)."""
    out: list[Access] = []
    for raw in parse_sql(sql):
        _walk(raw.stmt, out, set())
    return out


# -- the first hint: an unguarded read-then-write ----------------------------------------------


@dataclass(frozen=True)
class Hint:
    """A read of `table` without a row lock, then a write of a column it read, whose WHERE does
    not check that column: two transactions that read together both write."""

    table: str
    columns: tuple[str, ...]  # read, then written, unchecked
    read_sql: str
    write_sql: str


_SERIALISING = ("SERIALIZABLE", "REPEATABLE READ")


def read_then_write(statements: list[str]) -> list[Hint]:
    """The unguarded read-then-writes of one transaction's statements, in order. A row lock on
    the read, an advisory lock taken before it, a guard in the write's WHERE on what was read
    (a conditional or version-checked write), SERIALIZABLE or REPEATABLE READ, or an INSERT
    with ON CONFLICT each count as a guard."""
    hints: list[Hint] = []
    reads: list[tuple[Access, str]] = []
    advisory = False
    for sql in statements:
        upper = " ".join(sql.upper().split())
        if upper.startswith(("BEGIN", "START TRANSACTION")) and any(
            level in upper for level in _SERIALISING
        ):
            return []
        if "PG_ADVISORY_XACT_LOCK" in upper or "PG_ADVISORY_LOCK" in upper:
            advisory = True
            continue
        for access in accesses(sql):
            if access.kind == "read":
                if not access.locked and not advisory:
                    reads.append((access, sql))
                continue
            if access.kind != "update":
                continue
            for read, read_sql in reads:
                if read.table != access.table:
                    continue
                depends = (read.columns & access.columns) - access.guard
                if depends and not (read.columns & access.columns & access.guard):
                    hints.append(Hint(access.table, tuple(sorted(depends)), read_sql, sql))
    return hints


__all__ = ["Access", "Hint", "accesses", "read_then_write"]
