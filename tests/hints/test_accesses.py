"""The read and write sets of a statement (pglast); the hints built on them: test_rules.py."""

from __future__ import annotations

from racebench.harness.hints.accesses import accesses

READ = "SELECT id, invoice_id, amount, status FROM payments WHERE id = $1"


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
