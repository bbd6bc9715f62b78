"""The rows a capture writes, as SQL: one place, used by capture.py and the lock strategies.

A capture writes, in one transaction: the payment (-> captured, with who captured it and when),
the invoice (amount_paid and status), one allocation, one receipt and one audit event. Each
statement below writes all of it in ONE round trip; they differ only in how the payment row is
claimed and the invoice updated, which is the lock strategy's business.
"""

from __future__ import annotations

_CAPTURED = """
        status = 'captured',
        razorpay_payment_id = coalesce($2, razorpay_payment_id),
        captured_via = $3,
        captured_at = now(),
        version = version + 1"""

# For a strategy that has already made sure it may write (it holds the locks, or it guards
# nothing, like `none`): the payment unconditionally, the invoice to a value computed from its
# read. $1 payment, $2 razorpay payment id, $3 captured_via, $4 status captured from,
# $5 source, $6 invoice, $7 new amount_paid, $8 new invoice status, $9 amount.
WRITE_CAPTURE = f"""
    WITH payment AS (
        UPDATE payments SET {_CAPTURED} WHERE id = $1
    ), invoice AS (
        UPDATE invoices SET amount_paid = $7, status = $8 WHERE id = $6
    ), allocation AS (
        INSERT INTO payment_allocations (payment_id, invoice_id, amount) VALUES ($1, $6, $9)
    ), receipt AS (
        INSERT INTO receipts (payment_id) VALUES ($1)
    )
    INSERT INTO payment_events (payment_id, from_status, to_status, source)
    VALUES ($1, $4, 'captured', $5)"""

# The same writes, all hanging on a conditional claim: the payment is written only if its
# status is still the one this transaction read ($4), and everything else follows from the
# claimed row, so a loser writes nothing and gets no row back. The invoice is incremented in
# place (the UPDATE's row lock makes that atomic). Returns the invoice's new status.
WRITE_CAPTURE_IF_STATUS = f"""
    WITH claimed AS (
        UPDATE payments SET {_CAPTURED} WHERE id = $1 AND status = $4
        RETURNING id, invoice_id, amount
    ), invoice AS (
        UPDATE invoices i
        SET amount_paid = i.amount_paid + c.amount,
            status = CASE WHEN i.amount_paid + c.amount >= i.amount THEN 'paid'
                          WHEN i.amount_paid + c.amount > 0 THEN 'partially_paid'
                          ELSE 'unpaid' END
        FROM claimed c WHERE i.id = c.invoice_id
        RETURNING i.status
    ), allocation AS (
        INSERT INTO payment_allocations (payment_id, invoice_id, amount)
        SELECT id, invoice_id, amount FROM claimed
    ), receipt AS (
        INSERT INTO receipts (payment_id) SELECT id FROM claimed
    ), event AS (
        INSERT INTO payment_events (payment_id, from_status, to_status, source)
        SELECT id, $4, 'captured', $5 FROM claimed
    )
    SELECT status FROM invoice"""

# For a strategy that claims the payment and the invoice in steps of its own (`optimistic`):
# first the payment, only if its version is still the one read ($4) ...
# $1 payment, $2 razorpay payment id, $3 captured_via, $4 version read.
CLAIM_PAYMENT_IF_VERSION = f"UPDATE payments SET {_CAPTURED} WHERE id = $1 AND version = $4"
# ... then, once the invoice is updated too, the rest.
# $1 payment, $2 invoice, $3 amount, $4 status captured from, $5 source.
WRITE_CAPTURE_EFFECTS = """
    WITH allocation AS (
        INSERT INTO payment_allocations (payment_id, invoice_id, amount) VALUES ($1, $2, $3)
    ), receipt AS (
        INSERT INTO receipts (payment_id) VALUES ($1)
    )
    INSERT INTO payment_events (payment_id, from_status, to_status, source)
    VALUES ($1, $4, 'captured', $5)"""


def write_failure(condition: str = "") -> str:
    """A payment's move to `failed` and its audit event, in one statement; the event row is
    written only if the payment row was (`condition` narrows the UPDATE's WHERE).

    $1 payment, $2 source, $3 status read, then whatever `condition` uses ($4 ...).
    """
    return f"""
    WITH claimed AS (
        UPDATE payments SET status = 'failed', version = version + 1
        WHERE id = $1 {condition} RETURNING id
    )
    INSERT INTO payment_events (payment_id, from_status, to_status, source)
    SELECT id, $3, 'failed', $2 FROM claimed"""


WRITE_FAILURE = write_failure()
WRITE_FAILURE_IF_STATUS = write_failure("AND status = $3")
WRITE_FAILURE_IF_VERSION = write_failure("AND version = $4")
