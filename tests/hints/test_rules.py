"""The four kinds of hint and the guards that clear them, on transactions written out as SQL
(the statements real services sent through the proxy: the reference service's strategies and
the shop's SQLAlchemy), and the barrier tables and invariants their writes suggest."""

from __future__ import annotations

from racebench.harness.hints.accesses import facts, gates
from racebench.harness.hints.draft import barrier_tables, draft_invariants
from racebench.harness.hints.rules import analyse, read_then_write
from racebench.harness.hints.transcript import (
    VERIFY,
    WEBHOOK_CAPTURED,
    ForeignKey,
    Schema,
    Transaction,
    Transcript,
)

READ = "SELECT id, invoice_id, amount, status, version FROM payments WHERE id = $1"
READ_INVOICE = "SELECT amount, amount_paid FROM invoices WHERE id = $1"
WRITE = "UPDATE payments SET status = 'captured', version = version + 1 WHERE id = $1"
WRITE_INVOICE = "UPDATE invoices SET amount_paid = $2 WHERE id = $1"


def transcript(*transactions: tuple[str, list[str]], schema: Schema | None = None) -> Transcript:
    return Transcript(
        "proxy",
        [Transaction(request, tuple(sql), n) for n, (request, sql) in enumerate(transactions)],
        schema or Schema(),
        payment_table="payments",
    )


def kinds(found: Transcript) -> list[str]:
    return [h.id for h in analyse(found)]


def test_a_read_then_write_is_a_lost_update_and_each_guard_clears_it() -> None:
    [hint] = read_then_write(["BEGIN", READ, WRITE, "COMMIT"])
    assert (hint.table, hint.columns) == ("payments", ("status",))  # version: in place
    assert [e.role for e in hint.evidence] == ["read", "write"]
    assert read_then_write([READ + " FOR UPDATE", WRITE]) == []  # a row lock
    assert read_then_write([READ + " FOR NO KEY UPDATE", WRITE]) == []
    conditional = "UPDATE payments SET status = 'captured' WHERE id = $1 AND status = $2"
    assert read_then_write([READ, conditional]) == []  # checked in the write
    versioned = "UPDATE payments SET status = 'captured', version = version + 1 WHERE version = $2"
    assert read_then_write([READ, versioned]) == []  # a compare-and-set
    assert read_then_write(["SELECT pg_advisory_xact_lock($1)", READ, WRITE]) == []
    assert read_then_write(["BEGIN ISOLATION LEVEL SERIALIZABLE", READ, WRITE]) == []
    assert read_then_write(["BEGIN", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", READ,
                            WRITE]) == []  # fmt: skip
    in_place = "UPDATE invoices SET amount_paid = amount_paid + $2 WHERE id = $1"
    assert read_then_write([READ_INVOICE, in_place]) == []  # an atomic increment
    assert read_then_write([READ_INVOICE, WRITE_INVOICE])[0].columns == ("amount_paid",)


def test_what_a_read_covers_and_what_a_lock_covers() -> None:
    save = "UPDATE payments SET status = 'captured' WHERE id = $1"
    assert read_then_write(["SELECT * FROM payments WHERE id = $1", save]) != []  # * reads all
    assert read_then_write(['SELECT "payments".* FROM "payments" WHERE id = $1', save]) != []
    # FOR KEY SHARE does not block an UPDATE of a non-key column; FOR UPDATE OF o locks orders.
    assert read_then_write([READ + " FOR KEY SHARE", save]) != []
    join = "SELECT p.status, o.id FROM payments p JOIN orders o ON o.id = p.order_id"
    assert read_then_write([join + " FOR UPDATE OF o", save]) != []
    assert read_then_write([join + " FOR UPDATE OF p", save]) == []
    # A column of another table is not this one's: orders.status is neither read nor checked.
    assert read_then_write([join, "UPDATE orders SET status = 'paid' WHERE id = $1"]) == []
    other = "UPDATE payments p SET status = 'captured' FROM orders o WHERE o.status = 'open'"
    assert read_then_write([READ, other]) != []


def test_a_guard_must_turn_the_second_writer_away() -> None:
    def guarded(where: str) -> bool:
        write = f"UPDATE payments SET status = 'captured', captured_at = now() WHERE {where}"
        return read_then_write([READ, write]) == []

    assert guarded("id = $1 AND status = $2")
    assert guarded("id = $1 AND status IN ('pending', 'authorized')")
    assert guarded("id = $1 AND status <> 'captured'")  # the value it writes
    assert guarded("id = $1 AND captured_at IS NULL")  # it writes one
    assert not guarded("id = $1 AND status <> 'refunded'")  # both writers pass that
    assert not guarded("id = $1 AND status IS NOT NULL")


def test_an_advisory_lock_guards_the_reads_after_it_only() -> None:
    lock = "SELECT pg_advisory_xact_lock($1)"
    assert read_then_write([lock, READ, WRITE]) == []
    assert read_then_write([READ, lock, WRITE]) != []  # the read came first


def test_a_query_of_several_statements_is_read_one_by_one() -> None:
    multi = f"BEGIN; {READ}; {WRITE}; COMMIT"
    assert [h.table for h in read_then_write([multi])] == ["payments"]
    assert read_then_write([f"BEGIN; {READ} FOR UPDATE; {WRITE}; COMMIT"]) == []


def test_an_upsert_that_overwrites_what_was_read_is_a_write() -> None:
    upsert = (
        "INSERT INTO balances (account, amount) VALUES ($1, $2) "
        "ON CONFLICT (account) DO UPDATE SET amount = EXCLUDED.amount"
    )
    read = "SELECT amount FROM balances WHERE account = $1"
    assert [h.table for h in read_then_write([read, upsert])] == ["balances"]
    add = upsert.replace("EXCLUDED.amount", "balances.amount + EXCLUDED.amount")
    assert read_then_write([read, add]) == []


def test_a_read_in_one_transaction_written_in_the_next_is_a_split_check() -> None:
    save = "UPDATE payments SET status = 'captured' WHERE id = $1"
    autocommit = transcript((VERIFY, [READ]), (VERIFY, [save]))  # an ORM in autocommit
    [hint] = analyse(autocommit)
    assert (hint.id, hint.columns) == ("split_check:payments", ("status",))
    conditional = "UPDATE payments SET status = 'captured' WHERE id = $1 AND status = $2"
    assert analyse(transcript((VERIFY, [READ]), (VERIFY, [conditional]))) == []
    reread = ["BEGIN", READ + " FOR UPDATE", save, "COMMIT"]  # read again, under a lock
    assert analyse(transcript((VERIFY, [READ]), (VERIFY, reread))) == []


def test_session_isolation_carries_over_to_the_connection_s_transactions() -> None:
    session = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    capture = ("BEGIN", READ, WRITE, "COMMIT")
    found = Transcript(
        "proxy",
        [
            Transaction(VERIFY, (session,), 0, connection="1"),
            Transaction(VERIFY, capture, 1, connection="1"),
            Transaction(WEBHOOK_CAPTURED, capture, 0, connection="2"),
        ],
    )
    [hint] = analyse(found)
    assert hint.requests == [WEBHOOK_CAPTURED]  # connection 2 runs READ COMMITTED


def test_a_row_locked_first_is_the_row_written_not_the_rows_summed_after() -> None:
    # The shop's `reconciled`: lock the payment, sum the invoice's other payments, write it.
    total = "SELECT coalesce(sum(amount), 0) FROM payments WHERE invoice_id = $1 AND status = $2"
    assert read_then_write([READ + " FOR UPDATE", total, WRITE]) == []
    assert read_then_write([total, WRITE]) != []  # no lock at all: hinted


def test_the_write_in_a_cte_is_read_like_any_other() -> None:
    write = (
        "WITH p AS (UPDATE payments SET status = 'captured' WHERE id = $1 RETURNING id) "
        "INSERT INTO receipts (payment_id) SELECT id FROM p"
    )
    assert [h.table for h in read_then_write([READ, write])] == ["payments"]


def test_two_reads_in_two_statements_are_a_read_skew_when_another_writes_both() -> None:
    capture = ["BEGIN", READ, READ_INVOICE, WRITE, WRITE_INVOICE, "COMMIT"]
    found = analyse(transcript((VERIFY, capture), (WEBHOOK_CAPTURED, capture)))
    assert [h.id for h in found] == [
        "lost_update:payments",
        "lost_update:invoices",
        "read_skew:payments+invoices",
    ]
    assert found[0].requests == [VERIFY, WEBHOOK_CAPTURED]
    # One statement, one snapshot: no skew (the shop's `reconciled`).
    one = "SELECT i.amount_paid, (SELECT sum(amount) FROM payments p WHERE p.invoice_id = i.id) FROM invoices i WHERE i.id = $1"  # noqa: E501
    in_place = "UPDATE invoices SET amount_paid = amount_paid + $2 WHERE id = $1"
    single = ["BEGIN", READ + " FOR UPDATE", one, WRITE, in_place, "COMMIT"]
    assert kinds(transcript((VERIFY, single))) == []


def test_a_skew_each_write_rechecks_is_no_hint() -> None:
    # The reference's `optimistic`: each write compares what it read.
    claim = "UPDATE payments SET status = 'captured', version = version + 1 WHERE id = $1 AND version = $2"  # noqa: E501
    cas = "UPDATE invoices SET amount_paid = $2 WHERE id = $1 AND amount_paid = $3"
    optimistic = ["BEGIN", READ, claim, READ_INVOICE, cas, "COMMIT"]
    assert kinds(transcript((VERIFY, optimistic))) == []
    repeatable = ["BEGIN ISOLATION LEVEL REPEATABLE READ", READ, READ_INVOICE, WRITE, "COMMIT"]
    assert "read_skew:payments+invoices" not in kinds(transcript((VERIFY, repeatable)))


def test_check_then_insert_stands_unless_a_unique_index_covers_the_check() -> None:
    check = "SELECT id FROM refunds WHERE payment_id = $1 AND kind = 'full'"
    insert = "INSERT INTO refunds (payment_id, kind, amount) VALUES ($1, 'full', $2)"
    found = transcript((VERIFY, ["BEGIN", check, insert, "COMMIT"]))
    assert kinds(found) == ["check_then_insert:refunds"]
    assert analyse(found)[0].columns == ("kind", "payment_id")
    found.schema.unique_keys["refunds"] = [frozenset({"id"}), frozenset({"payment_id", "kind"})]
    assert kinds(found) == []
    upsert = insert + " ON CONFLICT DO NOTHING"
    assert kinds(transcript((VERIFY, ["BEGIN", check, upsert, "COMMIT"]))) == []
    locked = check + " FOR UPDATE"  # locks the rows found, and it found none
    assert kinds(transcript((VERIFY, ["BEGIN", locked, insert, "COMMIT"]))) != []
    parent = READ + " FOR UPDATE"  # the payment's row, which every refund locks first
    assert kinds(transcript((VERIFY, ["BEGIN", parent, check, insert, "COMMIT"]))) == []
    targeted = insert + " ON CONFLICT (payment_id, kind) DO NOTHING"  # a unique index on them
    assert kinds(transcript((VERIFY, ["BEGIN", check, targeted, "COMMIT"]))) == []
    elsewhere = insert.replace("(payment_id, kind, amount)", "(id, payment_id, kind, amount)")
    elsewhere = elsewhere.replace(
        "($1, 'full', $2)", "($3, $1, 'full', $2) ON CONFLICT (id) DO NOTHING"
    )
    assert kinds(transcript((VERIFY, ["BEGIN", check, elsewhere, "COMMIT"]))) != []


def test_a_claim_committed_before_its_work_is_hinted() -> None:
    claim = "INSERT INTO events (event_id, kind) VALUES ($1, $2)"
    keys = Schema(unique_keys={"events": [frozenset({"event_id"})]})
    early = transcript(
        (WEBHOOK_CAPTURED, ["BEGIN", claim, "COMMIT"]),
        (WEBHOOK_CAPTURED, ["BEGIN", READ + " FOR UPDATE", WRITE, "COMMIT"]),
        schema=keys,
    )
    [hint] = analyse(early)
    assert (hint.id, hint.columns) == ("claim_first:events", ("event_id",))
    assert [e.role for e in hint.evidence] == ["claim", "work"]
    together = transcript(
        (WEBHOOK_CAPTURED, ["BEGIN", claim, READ + " FOR UPDATE", WRITE, "COMMIT"]), schema=keys
    )
    assert analyse(together) == []
    # A row id claims nothing another request would also try.
    audit = "INSERT INTO audit (id, what) VALUES ($1, $2)"
    ids = Schema(unique_keys={"audit": [frozenset({"id"})]})
    logged = transcript(
        (VERIFY, ["BEGIN", audit, "COMMIT"]),
        (VERIFY, ["BEGIN", READ + " FOR UPDATE", WRITE, "COMMIT"]),
        schema=ids,
    )
    assert analyse(logged) == []


def test_a_statement_s_facts() -> None:
    assert facts("BEGIN ISOLATION LEVEL SERIALIZABLE;").isolation == "serializable"
    assert facts("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").isolation == "repeatable read"
    assert facts("SELECT pg_advisory_xact_lock(7)").advisory_lock
    assert not facts("SELECT pg_try_advisory_xact_lock(7)").advisory_lock  # maybe not granted
    assert not facts("SELECT pg_advisory_xact_lock_shared(7)").advisory_lock  # sharers pass
    session = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    assert facts(session).session_isolation == "serializable"
    assert facts("ROLLBACK").rolls_back and facts("COMMIT").ends
    assert not facts("SELEC nothing").parsed
    [insert] = facts("INSERT INTO e (a, b, c) VALUES ($1, 'captured', 3)").accesses
    assert insert.constants == {"b": "captured"}
    picks = gates(["invoices"])
    assert picks(WRITE_INVOICE) and not picks(READ_INVOICE) and not picks(WRITE)
    assert gates(["invoices"], reads=True)(READ_INVOICE)


def test_barrier_tables_are_what_the_captures_write_after_their_first_read() -> None:
    claim = "INSERT INTO events (event_id) VALUES ($1)"
    receipt = "INSERT INTO receipts (payment_id, amount) VALUES ($1, $2)"
    capture = ["BEGIN", READ, READ_INVOICE, WRITE_INVOICE, WRITE, receipt, "COMMIT"]
    found = transcript(
        (VERIFY, capture),
        (WEBHOOK_CAPTURED, ["BEGIN", claim, *capture[1:]]),
        ("webhook payment.failed", ["BEGIN", READ, "UPDATE refunds SET x = 1", "COMMIT"]),
    )
    assert barrier_tables(found) == ("invoices", "payments", "receipts")


def test_draft_invariants_follow_the_writes() -> None:
    receipt = "INSERT INTO receipts (payment_id, amount, kind) VALUES ($1, $2, 'capture')"
    capture = ["BEGIN", READ, READ_INVOICE, WRITE_INVOICE, WRITE, receipt, "COMMIT"]
    schema = Schema(
        primary_keys={"payments": ("id",), "invoices": ("id",)},
        foreign_keys=[
            ForeignKey("receipts", "payment_id", "payments", "id"),
            ForeignKey("payments", "invoice_id", "invoices", "id"),
        ],
        types={
            "payments": {"id": "bigint", "invoice_id": "bigint", "amount": "bigint"},
            "invoices": {"id": "bigint", "amount_paid": "bigint"},
            "receipts": {"payment_id": "bigint", "amount": "bigint", "kind": "text"},
        },
    )
    captured = "SELECT id AS payment_id FROM payments WHERE id = ANY($1::bigint[])"
    drafts = draft_invariants(transcript((VERIFY, capture), schema=schema), captured)
    assert [d.code for d in drafts] == [
        "ONE_RECEIPTS_PER_PAYMENT",
        "INVOICES_AMOUNT_PAID_DRIFT",
        "RECEIPTS_NOT_CAPTURED",
    ]
    one, drift, _ = drafts
    assert "kind = 'capture'" in one.sql and "ANY($1::bigint[])" in one.sql
    assert "sum(r.amount)" in drift.sql and "p.invoice_id = t.id" in drift.sql
    for draft in drafts:
        assert facts(draft.sql).parsed, draft.sql
