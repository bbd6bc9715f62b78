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
from pglast import parse_sql, split
from pglast.parser import ParseError
from pglast.visitors import Skip, Visitor

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
    conflict_key: frozenset[str] | None = None  # ON CONFLICT (these columns): a unique index


Ref = tuple[str | None, str]  # (the qualifier as written, or None; the column, or "*")


class _Refs(Visitor):  # type: ignore[misc]
    """The column references of an expression, not those of its subqueries (walked apart)."""

    def __init__(self) -> None:
        self.refs: set[Ref] = set()

    def visit_SubLink(self, ancestors: Any, node: ast.SubLink) -> Any:
        return Skip

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        fields = node.fields or ()
        last = fields[-1] if fields else None
        name = "*" if isinstance(last, ast.A_Star) else str(getattr(last, "sval", "?"))
        qualifier = getattr(fields[-2], "sval", None) if len(fields) >= 2 else None
        self.refs.add((qualifier, name))


def _refs(*nodes: Any) -> set[Ref]:
    found = _Refs()
    for node in nodes:
        if node is not None:
            found(node)
    return found.refs


def _columns(node: Any) -> set[str]:
    return {name for _, name in _refs(node)}


def _of(refs: set[Ref], names: set[str], everyone: bool) -> set[str]:
    """The columns of `refs` that belong to the table known by `names` (its name and alias);
    an unqualified one to every table of the statement (`everyone`) or to none."""
    return {c for q, c in refs if (q is None and everyone) or (q is not None and q in names)}


@dataclass(frozen=True)
class _Table:
    name: str
    alias: str | None

    @property
    def names(self) -> set[str]:
        return {self.name} | ({self.alias} if self.alias else set())


def _tables(from_clause: Any) -> list[_Table]:
    found: list[_Table] = []

    class Tables(Visitor):  # type: ignore[misc]
        def visit_SubLink(self, ancestors: Any, node: ast.SubLink) -> Any:
            return Skip

        def visit_RangeSubselect(self, ancestors: Any, node: ast.RangeSubselect) -> Any:
            return Skip  # walked as a statement of its own

        def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
            alias = node.alias.aliasname if node.alias is not None else None
            found.append(_Table(str(node.relname), alias))

    if from_clause:
        Tables()(from_clause)
    return found


def _relname(relation: ast.RangeVar | None) -> str:
    return str(relation.relname) if relation is not None else "?"


# FOR KEY SHARE does not block an UPDATE of non-key columns (PostgreSQL's row-lock conflicts):
# it guards nothing a capture writes. Every stronger lock does.
_WEAK_LOCKS = frozenset({"LCS_NONE", "LCS_FORKEYSHARE"})


def _locked(clauses: Any, table: _Table) -> bool:
    """A FOR UPDATE / NO KEY UPDATE / SHARE of this statement covers `table` (all of its FROM,
    or those its OF list names)."""
    for clause in clauses or ():
        strength = getattr(clause.strength, "name", "")
        if strength in _WEAK_LOCKS:
            continue
        named = {str(r.relname) for r in clause.lockedRels or ()}
        if not named or named & table.names:
            return True
    return False


_EQUALS = frozenset({"=", "=="})
_NOT_EQUALS = frozenset({"<>", "!="})


def _literal(node: Any) -> object:
    """A constant's value (None for anything else, such as a parameter)."""
    if isinstance(node, ast.A_Const) and node.val is not None:
        value = node.val
        for attr in ("sval", "ival", "fval", "boolval"):
            if hasattr(value, attr):
                return getattr(value, attr)
    if isinstance(node, ast.TypeCast):
        return _literal(node.arg)
    return None


def _guards(where: Any, names: set[str], sets: dict[str, Any]) -> set[str]:
    """The columns of the target table that the WHERE re-checks so that a second writer,
    after the first, finds no row: `c = <value>` (a parameter, a constant, IN, ANY), `c <> v`
    or `c NOT IN (...)` where v is the value the write sets, `c IS NULL` where it sets one."""
    found: set[str] = set()

    def column(node: Any) -> str | None:
        if isinstance(node, ast.TypeCast):
            node = node.arg
        if not isinstance(node, ast.ColumnRef):
            return None
        refs = _refs(node)
        mine = _of(refs, names, everyone=True)
        return next(iter(mine), None)

    class Guards(Visitor):  # type: ignore[misc]
        def visit_SubLink(self, ancestors: Any, node: ast.SubLink) -> Any:
            return Skip

        def visit_A_Expr(self, ancestors: Any, node: ast.A_Expr) -> None:
            op = str(getattr((node.name or ("",))[-1], "sval", ""))
            kind = getattr(node.kind, "name", "")
            for this, other in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
                name = column(this)
                if name is None:
                    continue
                if op in _EQUALS and kind in ("AEXPR_OP", "AEXPR_IN", "AEXPR_OP_ANY"):
                    if column(other) is None:
                        found.add(name)
                elif op in _NOT_EQUALS and name in sets:
                    written = _literal(sets[name])
                    others = other if isinstance(other, tuple) else (other,)
                    if written is not None and written in {_literal(o) for o in others}:
                        found.add(name)

        def visit_NullTest(self, ancestors: Any, node: ast.NullTest) -> None:
            name = column(node.arg)
            is_null = getattr(node.nulltesttype, "name", "") == "IS_NULL"
            if name is not None and is_null and name in sets:
                value = sets[name]
                if not (isinstance(value, ast.A_Const) and value.isnull):
                    found.add(name)

    if where is not None:
        Guards()(where)
    return found


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
        tables = [t for t in _tables(node.fromClause) if t.name not in ctes]
        refs = _refs(node.targetList, node.whereClause, node.fromClause, node.groupClause)
        where = _refs(node.whereClause)
        for table in tables:
            columns = _of(refs, table.names, everyone=True)
            out.append(
                Access(
                    table.name,
                    "read",
                    columns,
                    _of(where, table.names, everyone=True),
                    locked=_locked(node.lockingClause, table),
                )
            )
        for sub in _subqueries(node):
            _walk(sub, out, ctes)
    elif isinstance(node, ast.UpdateStmt):
        target = _Table(_relname(node.relation), _alias(node.relation))
        sets = {t.name: t.val for t in node.targetList or ()}
        in_place = {n for n, v in sets.items() if n in _of(_refs(v), target.names, True)}
        out.append(
            Access(
                target.name,
                "update",
                set(sets),
                _guards(node.whereClause, target.names, sets),
                in_place=in_place,
            )
        )
        for table in _tables(node.fromClause):
            if table.name not in ctes:
                refs = _refs(node.whereClause, *sets.values())
                out.append(Access(table.name, "read", _of(refs, table.names, False)))
        for sub in _subqueries(node):
            _walk(sub, out, ctes)
    elif isinstance(node, ast.InsertStmt):
        names = [c.name for c in node.cols or ()]
        into = _relname(node.relation)
        conflict = node.onConflictClause
        keys = None
        if conflict is not None and conflict.infer is not None:
            keys = frozenset(str(e.name) for e in conflict.infer.indexElems or () if e.name)
        out.append(
            Access(
                into,
                "insert",
                set(names),
                on_conflict=conflict is not None,
                constants=_constants(names, node.selectStmt),
                conflict_key=keys or None,
            )
        )
        if conflict is not None and getattr(conflict.action, "name", "") == "ONCONFLICT_UPDATE":
            target = _Table(into, _alias(node.relation))
            sets = {t.name: t.val for t in conflict.targetList or ()}
            in_place = {n for n, v in sets.items() if n in _of(_refs(v), target.names, True)}
            guard = _guards(conflict.whereClause, target.names, sets)
            out.append(Access(into, "update", set(sets), guard, in_place=in_place))
        if node.selectStmt is not None:
            _walk(node.selectStmt, out, ctes)
    elif isinstance(node, ast.DeleteStmt):
        target = _Table(_relname(node.relation), _alias(node.relation))
        out.append(Access(target.name, "delete", guard=_guards(node.whereClause, target.names, {})))
        for sub in _subqueries(node):
            _walk(sub, out, ctes)


def _alias(relation: ast.RangeVar | None) -> str | None:
    if relation is None or relation.alias is None:
        return None
    return str(relation.alias.aliasname)


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
        def visit_SubLink(self, ancestors: Any, sub: ast.SubLink) -> Any:
            found.append(sub.subselect)
            return Skip  # its own subqueries: when it is walked

        def visit_RangeSubselect(self, ancestors: Any, sub: ast.RangeSubselect) -> Any:
            found.append(sub.subquery)
            return Skip

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

# The advisory locks that make a second taker wait. A shared one lets every sharer through, and
# pg_try_* may not have been granted (the transcript does not show what it returned).
ADVISORY_LOCKS = frozenset({"pg_advisory_lock", "pg_advisory_xact_lock"})
Isolation = Literal["serializable", "repeatable read", "read committed", "read uncommitted"]


@dataclass(frozen=True)
class Facts:
    """What one statement (or a Query of several) means to a transaction."""

    accesses: tuple[Access, ...] = ()
    ends: bool = False  # COMMIT / ROLLBACK / END / ABORT
    rolls_back: bool = False
    isolation: Isolation | None = None  # from BEGIN ... ISOLATION LEVEL or SET TRANSACTION
    # SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL ... (what PgJDBC sends) or
    # SET default_transaction_isolation: the connection's later transactions
    session_isolation: Isolation | None = None
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


_LEVELS: dict[str, Isolation] = {
    "serializable": "serializable",
    "repeatable read": "repeatable read",
    "read committed": "read committed",
    "read uncommitted": "read uncommitted",
}


def _level(value: object) -> Isolation | None:
    return _LEVELS.get(str(value).lower()) if value is not None else None


def _isolation(options: Any) -> Isolation | None:
    for option in options or ():
        if isinstance(option, ast.DefElem) and option.defname == "transaction_isolation":
            return _level(getattr(getattr(option.arg, "val", None), "sval", None))
    return None


@lru_cache(maxsize=65536)
def facts(sql: str) -> Facts:
    """The accesses of `sql`, and what it does to its transaction (see the module's doc)."""
    try:
        raws = parse_sql(sql)
    except (ParseError, RecursionError):
        return Facts(parsed=False)
    out: list[Access] = []
    ends = rolls_back = advisory = False
    isolation: Isolation | None = None
    session: Isolation | None = None
    for raw in raws:
        stmt = raw.stmt
        if stmt is None:
            continue
        if isinstance(stmt, ast.TransactionStmt):
            kind = stmt.kind.name if stmt.kind is not None else ""
            if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
                isolation = _isolation(stmt.options) or isolation
            elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK"):
                ends = True
                rolls_back = kind == "TRANS_STMT_ROLLBACK"
            continue
        if isinstance(stmt, ast.VariableSetStmt):
            if stmt.name == "TRANSACTION":
                isolation = _isolation(stmt.args) or isolation
            elif stmt.name == "SESSION CHARACTERISTICS":
                session = _isolation(stmt.args) or session
            elif stmt.name == "default_transaction_isolation" and stmt.args:
                value = str(_literal(stmt.args[0]) or "").lower()
                session = _level(value) or session
            continue
        try:
            functions = _Functions()
            functions(stmt)
            advisory = advisory or bool(functions.names & ADVISORY_LOCKS)
            _walk(stmt, out, set())
        except RecursionError:
            return Facts(parsed=False)
    return Facts(
        tuple(out),
        ends=ends,
        rolls_back=rolls_back,
        isolation=isolation,
        session_isolation=session,
        advisory_lock=advisory,
    )


@lru_cache(maxsize=65536)
def parts(sql: str) -> tuple[str, ...]:
    """The statements of a simple Query that holds several (`BEGIN; ...; COMMIT`), each on its
    own; the text itself when it holds one, or when PostgreSQL's parser cannot read it."""
    try:
        found = tuple(split(sql, with_parser=True))
    except (ParseError, RecursionError):
        return (sql,)
    return found if len(found) > 1 else (sql,)


def gates(tables: Sequence[str], reads: bool = False) -> Callable[[str], bool]:
    """Which statements touch `tables`: every one that writes them, and (`reads`) every one
    that reads them too. racebench hints --confirm makes only these decision points."""
    wanted = set(tables)

    def picks(sql: str) -> bool:
        return any(a.table in wanted and (reads or a.kind != "read") for a in facts(sql).accesses)

    return picks


__all__ = [
    "ADVISORY_LOCKS",
    "Access",
    "Facts",
    "Isolation",
    "accesses",
    "facts",
    "gates",
    "parts",
]
