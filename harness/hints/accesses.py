"""What one statement reads and writes, by table and column, parsed with PostgreSQL's own parser
(pglast, libpg_query): the ground a hint stands on (racebench hints; the rules: rules.py).

`accesses(sql)` walks the statement and every statement nested in it (CTEs, subqueries):
- a SELECT reads the columns it names from the tables in its FROM, `locked` when it carries
  FOR UPDATE / FOR SHARE (any strength);
- an UPDATE writes its SET columns and reads the columns of its WHERE (its guard), and of the
  expressions it assigns (`in_place`: the columns assigned from themselves, `n = n + 1`);
- an INSERT writes its columns (`on_conflict` when it has ON CONFLICT); a DELETE writes the row.
Column names are as written (unqualified); a `*` reads every column.

`facts(sql)` adds what a transaction's guards are made of: BEGIN (and its isolation level),
SET TRANSACTION, COMMIT and ROLLBACK, and an advisory lock taken (pg_advisory_xact_lock ...).
It is cached by the SQL's text: a log of 100,000 lines repeats a few dozen statements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import pglast.ast as ast
from pglast import parse_sql
from pglast.parser import ParseError
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
    in_place: set[str] = field(default_factory=set)  # UPDATE columns set from themselves
    constants: dict[str, str] = field(default_factory=dict)  # INSERT columns given a literal


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
        targets = node.targetList or ()
        written = {t.name for t in targets}
        in_place = {t.name for t in targets if t.name in _columns(t.val)}
        out.append(
            Access(
                _relname(node.relation),
                "update",
                written,
                _columns(node.whereClause),
                in_place=in_place,
            )
        )
        for sub in _subqueries(node):
            _walk(sub, out, ctes)
    elif isinstance(node, ast.InsertStmt):
        names = [c.name for c in node.cols or ()]
        out.append(
            Access(
                _relname(node.relation),
                "insert",
                set(names),
                on_conflict=node.onConflictClause is not None,
                constants=_constants(names, node.selectStmt),
            )
        )
        if node.selectStmt is not None:
            _walk(node.selectStmt, out, ctes)
    elif isinstance(node, ast.DeleteStmt):
        out.append(Access(_relname(node.relation), "delete", guard=_columns(node.whereClause)))


def _constants(names: list[str], source: Any) -> dict[str, str]:
    """The inserted columns whose value is a string literal in every row (VALUES or SELECT)."""
    if source is None:
        return {}
    rows = [list(r) for r in source.valuesLists or ()]
    if not rows and source.targetList:
        rows = [[t.val for t in source.targetList]]
    found: dict[str, str] = {}
    for i, name in enumerate(names):
        values = {
            getattr(getattr(row[i], "val", None), "sval", None) if i < len(row) else None
            for row in rows
        }
        if len(values) == 1 and isinstance(value := values.pop(), str):
            found[name] = value
    return found


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


# -- a statement's facts -----------------------------------------------------------------------

ADVISORY_LOCKS = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_xact_lock",
        "pg_advisory_lock_shared",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_xact_lock",
    }
)
Isolation = Literal["serializable", "repeatable read", "read committed", "read uncommitted"]


@dataclass(frozen=True)
class Facts:
    """What one statement (or a Query of several) means to a transaction."""

    accesses: tuple[Access, ...] = ()
    begins: bool = False  # BEGIN / START TRANSACTION
    ends: bool = False  # COMMIT / ROLLBACK / END / ABORT
    rolls_back: bool = False
    isolation: Isolation | None = None  # from BEGIN ... ISOLATION LEVEL or SET TRANSACTION
    advisory_lock: bool = False  # it takes an advisory lock
    parsed: bool = True  # False: PostgreSQL's parser could not read it

    @property
    def writes(self) -> bool:
        return any(a.kind != "read" for a in self.accesses)


class _Functions(Visitor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        name = (node.funcname or ("",))[-1]
        self.names.add(str(getattr(name, "sval", "")).lower())


def _isolation(options: Any) -> Isolation | None:
    for option in options or ():
        if isinstance(option, ast.DefElem) and option.defname == "transaction_isolation":
            value = getattr(getattr(option.arg, "val", None), "sval", None)
            if value in ("serializable", "repeatable read", "read committed", "read uncommitted"):
                return value  # type: ignore[no-any-return]
    return None


@lru_cache(maxsize=65536)
def facts(sql: str) -> Facts:
    """The accesses of `sql`, and what it does to its transaction (see the module's doc)."""
    try:
        raws = parse_sql(sql)
    except ParseError:
        return Facts(parsed=False)
    out: list[Access] = []
    begins = ends = rolls_back = advisory = False
    isolation: Isolation | None = None
    for raw in raws:
        stmt = raw.stmt
        if stmt is None:
            continue
        if isinstance(stmt, ast.TransactionStmt):
            kind = stmt.kind.name if stmt.kind is not None else ""
            if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
                begins = True
                isolation = _isolation(stmt.options) or isolation
            elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK"):
                ends = True
                rolls_back = kind == "TRANS_STMT_ROLLBACK"
            continue
        if isinstance(stmt, ast.VariableSetStmt):
            if stmt.name == "TRANSACTION":
                isolation = _isolation(stmt.args) or isolation
            continue
        functions = _Functions()
        functions(stmt)
        advisory = advisory or bool(functions.names & ADVISORY_LOCKS)
        _walk(stmt, out, set())
    return Facts(tuple(out), begins, ends, rolls_back, isolation, advisory)


def gates(tables: Sequence[str], reads: bool = False) -> Callable[[str], bool]:
    """Which statements touch `tables`: every one that writes them, and (`reads`) every one
    that reads them too. racebench hints --confirm makes only these decision points."""
    wanted = set(tables)

    def picks(sql: str) -> bool:
        return any(a.table in wanted and (reads or a.kind != "read") for a in facts(sql).accesses)

    return picks


__all__ = ["ADVISORY_LOCKS", "Access", "Facts", "Isolation", "accesses", "facts", "gates"]
