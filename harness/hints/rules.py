"""The hints: where two requests' transactions can interleave so that both act on what only one
should, read off the SQL each transaction ran (transcript.py) and the unique keys of its tables.

Five kinds, in the order they are ranked:

- lost_update: a read of a table without FOR UPDATE / FOR SHARE, then, in a later statement of
  the same transaction, an UPDATE of a column that was read, set from outside (not `n = n + 1`),
  whose WHERE does not turn a second writer away: no `c = <value>` (`status = $read`,
  `version = $read`), `c <> <the value it writes>` or `c IS NULL` on a column it writes. Two
  transactions that both read before either writes both write. A transaction that locked a
  row of the table before (FOR UPDATE) is taken to write that row.
- split_check: the same, across transactions of one request (or, in a log, one backend's next
  transaction): what one transaction read, a later one writes without reading it again (an ORM
  in autocommit, a read outside the transaction that saves). ACIDRain's scope-based anomaly.
- check_then_insert: a read of a table, then an INSERT into it of the columns the read checked,
  with no unique index on those columns (pg_index, or the ON CONFLICT target). FOR UPDATE on
  the check does not help (it locks the rows found, and it found none); a row lock taken before
  it, on another row every such transaction locks (the payment), does.
- read_skew: two reads in two statements of one READ COMMITTED transaction (two snapshots),
  without row locks, of columns that another transaction writes together, then a write that
  checks neither read. A commit between the two reads is seen by the second and not the first.
- claim_first: a request that inserts a claim (a row of a unique key, such as an event id) in a
  transaction of its own, then does the work the claim guards in a later one. A failure between
  them leaves the claim, and the retry is refused as a duplicate: the work is lost.

A transaction is guarded when it runs SERIALIZABLE (the transcript shows the BEGIN, SET
TRANSACTION, or the connection's SET SESSION CHARACTERISTICS), or REPEATABLE READ for the lost
update and the read skew (PostgreSQL aborts the second writer of a row); a read is guarded by
an advisory lock (pg_advisory_lock, pg_advisory_xact_lock) taken before it. A row lock is any
but FOR KEY SHARE (which does not block an UPDATE of other columns), on the tables its OF
names. A simple Query of several statements is read statement by statement. A lock held
inside the application is invisible to the database, and so is its guarantee: such a
transaction is hinted, "unguarded at the database", which is true as soon as a second process
serves requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from racebench.harness.hints.accesses import Access, facts, parts
from racebench.harness.hints.transcript import CAPTURES, Transaction, Transcript

Kind = Literal["lost_update", "split_check", "check_then_insert", "read_skew", "claim_first"]
KINDS: tuple[Kind, ...] = (
    "lost_update",
    "split_check",
    "check_then_insert",
    "read_skew",
    "claim_first",
)
TOP = 3  # a build with a bug must have a confirmed hint this high (racebench hints' gate)
TITLES: dict[Kind, str] = {
    "lost_update": "read, then write what was read (a lost update)",
    "split_check": "read in one transaction, written in the next",
    "check_then_insert": "check, then insert (no unique index)",
    "read_skew": "two reads, two snapshots (read skew)",
    "claim_first": "claim in one transaction, work in the next",
}


@dataclass(frozen=True)
class Evidence:
    """One statement that proves a hint, and what it does in it."""

    role: str  # read, write, check, insert, claim, work
    sql: str
    request: str
    transaction: int  # the request's n-th transaction


@dataclass
class Hint:
    """One suspected race, with the statements that prove it."""

    kind: Kind
    table: str  # the contended table (read skew: the one read first)
    columns: tuple[str, ...]
    tables: tuple[str, ...]  # every table it involves
    requests: list[str]
    evidence: list[Evidence]
    why: str
    fix: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{'+'.join(self.tables)}"

    @property
    def title(self) -> str:
        return TITLES[self.kind]


@dataclass
class _Read:
    access: Access
    sql: str
    position: int  # the statement's index in its transaction
    guarded: bool = False  # an advisory lock or another row's lock was taken before it


def _overlap(read: set[str], columns: set[str]) -> set[str]:
    """The columns of `columns` that a read of `read` saw (all of them after a `*`)."""
    return set(columns) if "*" in read else read & columns


def _statements(txn: Transaction) -> list[str]:
    """The transaction's statements, a simple Query of several split into each."""
    return [part for sql in txn.statements for part in parts(sql)]


def _guarded_by_serial(isolation: str | None, kind: Kind) -> bool:
    if isolation == "serializable":
        return True
    return isolation == "repeatable read" and kind in ("lost_update", "read_skew")


def _evidence(role: str, sql: str, txn: Transaction) -> Evidence:
    return Evidence(role, sql, txn.request, txn.index)


def _written(transactions: Sequence[Transaction]) -> list[dict[str, set[str]]]:
    """The updated columns by table of each transaction, each shape once."""
    out: list[dict[str, set[str]]] = []
    seen: set[frozenset[tuple[str, frozenset[str]]]] = set()
    for txn in transactions:
        columns: dict[str, set[str]] = {}
        for sql in _statements(txn):
            for access in facts(sql).accesses:
                if access.kind == "update":
                    columns.setdefault(access.table, set()).update(access.columns)
        shape = frozenset((t, frozenset(c)) for t, c in columns.items())
        if columns and shape not in seen:
            seen.add(shape)
            out.append(columns)
    return out


def _scan(
    txn: Transaction,
    keys: dict[str, list[frozenset[str]]],
    writers: list[dict[str, set[str]]],
    isolation: str | None = None,
) -> list[Hint]:
    """The hints inside one transaction. `isolation`: its connection's default."""
    hints: list[Hint] = []
    advisory = locked_any = False
    unlocked: list[_Read] = []  # reads a concurrent write can slip behind
    checks: list[_Read] = []  # every read (a row lock does not cover a row not found)
    updates: list[tuple[Access, int]] = []
    for position, sql in enumerate(_statements(txn)):
        found = facts(sql)
        isolation = found.isolation or isolation
        reads = [a for a in found.accesses if a.kind == "read"]
        for access in found.accesses:
            if access.kind == "update":
                updates.append((access, position))
                locked = any(r.access.locked and r.access.table == access.table for r in checks)
                if not (locked or _guarded_by_serial(isolation, "lost_update")):
                    hints += _lost_update(txn, access, sql, unlocked)
            elif access.kind == "insert" and not _guarded_by_serial(isolation, "check_then_insert"):
                hints += _check_then_insert(txn, access, sql, checks, keys)
        for access in reads:
            read = _Read(access, sql, position, guarded=advisory or locked_any)
            checks.append(read)
            if not access.locked and not advisory:
                unlocked.append(read)
        advisory = advisory or found.advisory_lock
        locked_any = locked_any or any(a.locked for a in reads)
    if not _guarded_by_serial(isolation, "read_skew"):
        hints += _read_skew(txn, unlocked, updates, writers)
    return hints


def _lost_update(txn: Transaction, write: Access, sql: str, reads: list[_Read]) -> list[Hint]:
    hints: list[Hint] = []
    for read in reads:
        if read.access.table != write.table or read.sql == sql:
            continue
        if write.guard & write.columns:
            continue  # a conditional or version-checked write: the second writer finds no row
        both = _overlap(read.access.columns, write.columns)
        depends = both - write.in_place
        if not depends:
            continue
        columns = tuple(sorted(depends))
        hints.append(
            Hint(
                "lost_update",
                write.table,
                columns,
                (write.table,),
                [txn.request],
                [_evidence("read", read.sql, txn), _evidence("write", sql, txn)],
                why=(
                    f"{write.table}.{', '.join(columns)} is read without a row lock, then "
                    "written from what was read, and the write's WHERE does not check it: two "
                    "transactions that both read before either writes both write. Unguarded at "
                    "the database: nothing there orders them (a lock inside the application "
                    "does not hold across processes)"
                ),
                fix=(
                    "read with SELECT ... FOR UPDATE and check after the lock, or make the "
                    f"write conditional (UPDATE {write.table} ... WHERE {columns[0]} = "
                    "<what was read>) and check its row count"
                ),
            )
        )
        break
    return hints


def _check_then_insert(
    txn: Transaction,
    insert: Access,
    sql: str,
    reads: list[_Read],
    keys: dict[str, list[frozenset[str]]],
) -> list[Hint]:
    unique = [*keys.get(insert.table, [])]
    if insert.conflict_key:
        unique.append(insert.conflict_key)  # ON CONFLICT (these) needs a unique index on them
    for read in reads:
        if read.access.table != insert.table or read.sql == sql or read.guarded:
            continue
        checked = read.access.guard & insert.columns
        if not checked:
            continue
        if any(key <= checked for key in unique):
            continue  # a unique index enforces what was checked
        if insert.on_conflict and insert.conflict_key is None and not keys:
            continue  # ON CONFLICT on any unique index, and the indexes are not known
        columns = tuple(sorted(checked))
        return [
            Hint(
                "check_then_insert",
                insert.table,
                columns,
                (insert.table,),
                [txn.request],
                [_evidence("check", read.sql, txn), _evidence("insert", sql, txn)],
                why=(
                    f"the transaction looks for a {insert.table} row by {', '.join(columns)}, "
                    "then inserts one, and no unique index covers those columns: two that "
                    "both find none both insert (a row lock cannot lock a row not found)"
                ),
                fix=(
                    f"a unique index on {insert.table} ({', '.join(columns)}), with INSERT ... "
                    "ON CONFLICT DO NOTHING and a check of the row count"
                ),
            )
        ]
    return []


def _read_skew(
    txn: Transaction,
    unlocked: list[_Read],
    updates: list[tuple[Access, int]],
    writers: list[dict[str, set[str]]],
) -> list[Hint]:
    for i, first in enumerate(unlocked):
        for second in unlocked[i + 1 :]:
            if second.position == first.position:
                continue  # one statement, one snapshot
            together = [
                w
                for w in writers
                if _overlap(first.access.columns, w.get(first.access.table, set()))
                and _overlap(second.access.columns, w.get(second.access.table, set()))
            ]
            if not together:
                continue
            later = [(u, p) for u, p in updates if p > second.position]
            if not later or any(
                _validates(u, r, together) for u, _ in later for r in (first, second)
            ):
                continue
            order = {first.access.table: 0, second.access.table: 1}
            write, position = min(later, key=lambda up: order.get(up[0].table, 2))
            tables = tuple(dict.fromkeys((first.access.table, second.access.table)))
            return [
                Hint(
                    "read_skew",
                    first.access.table,
                    tuple(sorted(_overlap(first.access.columns, together[0][first.access.table]))),
                    tables,
                    [txn.request],
                    [
                        _evidence("read", first.sql, txn),
                        _evidence("read", second.sql, txn),
                        _evidence("write", txn.statements[position], txn),
                    ],
                    why=(
                        f"{' and '.join(tables)} are read in two statements, two snapshots "
                        "under READ COMMITTED, without row locks; another transaction writes "
                        "both, and one that commits between the two reads is seen by the "
                        f"second and not the first. The {write.table} write that follows acts "
                        "on that mixed view"
                    ),
                    fix=(
                        "read both in one statement (one snapshot), lock what the decision "
                        "rests on (FOR UPDATE), or run the transaction REPEATABLE READ"
                    ),
                )
            ]
    return []


def _validates(write: Access, read: _Read, writers: list[dict[str, set[str]]]) -> bool:
    """The write's WHERE re-checks a column of the read that the other transactions write."""
    if write.table != read.access.table:
        return False
    concurrent = set().union(*(w.get(write.table, set()) for w in writers))
    return bool(write.guard & _overlap(read.access.columns, concurrent))


def _runs(transcript: Transcript) -> list[tuple[str, bool, list[Transaction]]]:
    """Each request's transactions in order (a log: each backend's), and whether only the
    next one counts as its continuation (a log: the next request may be someone else's)."""
    runs: dict[tuple[str, str | None], list[Transaction]] = {}
    for txn in transcript.transactions:
        runs.setdefault((txn.request, txn.session), []).append(txn)
    return [(request, session is not None, txns) for (request, session), txns in runs.items()]


def _across(transcript: Transcript, keys: dict[str, list[frozenset[str]]]) -> list[Hint]:
    """The hints across a request's transactions: split_check and claim_first."""
    hints: list[Hint] = []
    for request, next_only, txns in _runs(transcript):
        for n, txn in enumerate(txns):
            after = txns[n + 1 : n + 2] if next_only else txns[n + 1 :]
            hints += _split_check(txn, after)
            claim = _claim(txn, keys)
            if claim is not None:
                hints += _claim_first(request, txn, claim, after, keys)
    return hints


def _split_check(txn: Transaction, after: Sequence[Transaction]) -> list[Hint]:
    reads = [(a, sql) for sql in _statements(txn) for a in facts(sql).accesses if a.kind == "read"]
    for later in after:
        seen: set[str] = set()  # tables the later transaction reads before it writes them
        for sql in _statements(later):
            for access in facts(sql).accesses:
                if access.kind == "read":
                    seen.add(access.table)
                    continue
                if access.kind != "update" or access.table in seen:
                    continue
                for read, read_sql in reads:
                    if read.table != access.table:
                        continue
                    depends = _overlap(read.columns, access.columns) - access.in_place
                    if not depends or access.guard & access.columns:
                        continue
                    columns = tuple(sorted(depends))
                    return [
                        Hint(
                            "split_check",
                            access.table,
                            columns,
                            (access.table,),
                            [txn.request],
                            [_evidence("read", read_sql, txn), _evidence("write", sql, later)],
                            why=(
                                f"{access.table}.{', '.join(columns)} is read in one "
                                "transaction and written in a later one, whose WHERE does not "
                                "check it again: the check is stale by the time of the write, "
                                "and two requests that both read before either writes both "
                                "write"
                            ),
                            fix=(
                                "read and write in one transaction, the read with SELECT ... "
                                "FOR UPDATE, or make the write conditional (UPDATE "
                                f"{access.table} ... WHERE {columns[0]} = <what was read>) "
                                "and check its row count"
                            ),
                        )
                    ]
    return []


def _claim_first(
    request: str,
    txn: Transaction,
    claim: tuple[Access, str],
    after: Sequence[Transaction],
    keys: dict[str, list[frozenset[str]]],
) -> list[Hint]:
    access, sql = claim
    work = [
        (later, stmt)
        for later in after
        for stmt in _statements(later)
        if any(a.kind == "update" for a in facts(stmt).accesses)
    ]
    if not work:
        return []
    later, stmt = work[0]
    columns = tuple(sorted(next(k for k in _claim_keys(access, keys) if k <= access.columns)))
    return [
        Hint(
            "claim_first",
            access.table,
            columns,
            (access.table,),
            [request],
            [_evidence("claim", sql, txn), _evidence("work", stmt, later)],
            why=(
                f"the {access.table} row ({', '.join(columns)}) is claimed and committed in a "
                "transaction of its own, before the work it guards: when that work fails (a "
                "timeout, a killed backend, a crash), the claim stays, and the retry is refused "
                "as a duplicate; the work is lost"
            ),
            fix=(
                "claim in the same transaction as the work (INSERT ... ON CONFLICT DO NOTHING "
                "first, then the work, one COMMIT)"
            ),
        )
    ]


def _claim_keys(access: Access, keys: dict[str, list[frozenset[str]]]) -> list[frozenset[str]]:
    """The unique keys an INSERT claims: not a bare `id` (a generated or random row id claims
    nothing another request would also try)."""
    found = [*keys.get(access.table, [])]
    if access.conflict_key:
        found.append(access.conflict_key)
    return [k for k in found if k != frozenset({"id"})]


def _claim(txn: Transaction, keys: dict[str, list[frozenset[str]]]) -> tuple[Access, str] | None:
    """The transaction's claim: an INSERT that writes a whole unique key, and no UPDATE."""
    claim = None
    for sql in _statements(txn):
        for access in facts(sql).accesses:
            if access.kind in ("update", "delete"):
                return None
            if access.kind == "insert" and any(
                key <= access.columns for key in _claim_keys(access, keys)
            ):
                claim = (access, sql)
    return claim


def _isolations(transcript: Transcript) -> dict[int, str | None]:
    """Each transaction's isolation before its own BEGIN says otherwise: its connection's
    default, as SET SESSION CHARACTERISTICS or default_transaction_isolation left it."""
    defaults: dict[str | None, str | None] = {}
    found: dict[int, str | None] = {}
    for n, txn in enumerate(transcript.transactions):
        where = txn.connection
        found[n] = defaults.get(where) if where is not None else None
        for sql in _statements(txn):
            level = facts(sql).session_isolation
            if level is not None and where is not None:
                defaults[where] = level
    return found


@dataclass(frozen=True)
class Sets:
    """One transaction's read and write sets, by table and column."""

    request: str
    transaction: int
    statements: int
    isolation: str | None
    reads: dict[str, tuple[str, ...]]
    locked: tuple[str, ...]  # the tables it read under a row lock
    writes: dict[str, tuple[str, ...]]  # table -> columns ("" for a DELETE's row)
    count: int = 1  # the transactions of this shape (a log repeats a few)


def read_write_sets(transcript: Transcript, limit: int = 200) -> list[Sets]:
    """Each transaction's read and write sets, each shape once (at most `limit` shapes)."""
    shapes: dict[tuple[object, ...], Sets] = {}
    for txn in transcript.transactions:
        reads: dict[str, set[str]] = {}
        writes: dict[str, set[str]] = {}
        locked: set[str] = set()
        isolation = None
        statements = _statements(txn)
        for sql in statements:
            found = facts(sql)
            isolation = found.isolation or isolation
            for access in found.accesses:
                if access.kind == "read":
                    reads.setdefault(access.table, set()).update(access.columns)
                    if access.locked:
                        locked.add(access.table)
                else:
                    writes.setdefault(access.table, set()).update(access.columns or {""})
        shape = Sets(
            txn.request,
            txn.index,
            len(statements),
            isolation,
            {t: tuple(sorted(c)) for t, c in reads.items()},
            tuple(sorted(locked)),
            {t: tuple(sorted(c)) for t, c in writes.items()},
        )
        key = (txn.request, isolation, repr(shape.reads), shape.locked, repr(shape.writes))
        if key in shapes:
            same = shapes[key]
            shapes[key] = Sets(**{**vars(same), "count": same.count + 1})
        elif len(shapes) < limit:
            shapes[key] = shape
    return list(shapes.values())


def analyse(transcript: Transcript) -> list[Hint]:
    """Every hint of the transcript, one per kind and table(s), ranked (see the docstring)."""
    keys = transcript.unique_keys
    # A log repeats a few transaction shapes thousands of times: each is read once.
    levels = _isolations(transcript)
    first: dict[tuple[str, tuple[str, ...], str | None], tuple[Transaction, str | None]] = {}
    for n, txn in enumerate(transcript.transactions):
        first.setdefault((txn.request, txn.statements, levels[n]), (txn, levels[n]))
    distinct = list(first.values())
    writers = _written([txn for txn, _ in distinct])
    found: list[Hint] = []
    for txn, level in distinct:
        found += _scan(txn, keys, writers, level)
    found += _across(transcript, keys)
    merged: dict[str, Hint] = {}
    for hint in found:
        same = merged.get(hint.id)
        if same is None:
            merged[hint.id] = hint
            continue
        same.columns = tuple(sorted(set(same.columns) | set(hint.columns)))
        for request in hint.requests:
            if request not in same.requests:
                same.requests.append(request)
    return rank(list(merged.values()), transcript.payment_table)


def rank(hints: Sequence[Hint], payment_table: str | None = None) -> list[Hint]:
    """Most likely to hurt first: by kind; then those both capture paths share; then the
    payment's own table."""

    def key(hint: Hint) -> tuple[int, int, int]:
        paths = sum(request in hint.requests for request in CAPTURES)
        return (KINDS.index(hint.kind), -paths, 0 if hint.table == payment_table else 1)

    return sorted(hints, key=key)


def read_then_write(statements: list[str]) -> list[Hint]:
    """The lost-update hints of one transaction's statements (a shortcut for tests and for a
    quick look at a transaction)."""
    transcript = Transcript("statements", [Transaction("-", tuple(statements))])
    return [h for h in analyse(transcript) if h.kind == "lost_update"]


__all__ = [
    "KINDS",
    "TITLES",
    "TOP",
    "Evidence",
    "Hint",
    "Kind",
    "Sets",
    "analyse",
    "rank",
    "read_then_write",
    "read_write_sets",
]
