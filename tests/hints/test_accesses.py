"""The read and write sets of a statement (pglast), and the unguarded read-then-write."""

from __future__ import annotations

from racebench.harness.hints.accesses import accesses
from racebench.harness.hints.rules import read_then_write

READ = "SELECT id, invoice_id, amount, status FROM payments WHERE id = $1"
WRITE = "UPDATE payments SET status = 'captured' WHERE id = $1"


def test_a_cte_update_and_its_insert() -> None:
    sql = (
        "WITH p AS (UPDATE payments SET status = 'captured' WHERE id = $1 AND status = "
        "'pending' RETURNING id, amount) INSERT INTO receipts (payment_id, amount) "
        "SELECT id, amount FROM p"
    )
    [update, insert] = accesses(sql)
    assert (update.table, update.kind, update.columns, update.guard) == (
        "payments", "update", {"status"}, {"id", "status"},
    )  # fmt: skip
    assert (insert.table, insert.kind) == ("receipts", "insert")
    assert accesses("BEGIN") == []
    assert accesses(READ + " FOR UPDATE")[0].locked


def test_read_then_write_is_hinted_and_each_guard_clears_it() -> None:
    [hint] = read_then_write(["BEGIN", READ, WRITE, "COMMIT"])
    assert (hint.table, hint.columns) == ("payments", ("status",))
    assert read_then_write([READ + " FOR UPDATE", WRITE]) == []  # a row lock
    conditional = "UPDATE payments SET status = 'captured' WHERE id = $1 AND status = 'pending'"
    assert read_then_write([READ, conditional]) == []  # checked in the write
    assert read_then_write(["SELECT pg_advisory_xact_lock($1)", READ, WRITE]) == []
    assert read_then_write(["BEGIN ISOLATION LEVEL SERIALIZABLE", READ, WRITE]) == []
    atomic = "UPDATE invoices SET amount_paid = amount_paid + $2 WHERE id = $1"
    assert read_then_write([READ, atomic]) == []  # another table, and nothing read
