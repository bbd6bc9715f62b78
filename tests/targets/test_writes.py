"""The lock probe: one request alone, every table it writes seen in order, with its
transaction and whether that transaction had read first; and what makes a hold a proof."""

from __future__ import annotations

import asyncpg
import pytest

from racebench.harness.database import connect, parse_url
from racebench.harness.target.barrier import HeldBack
from racebench.harness.target.writes import probe

TABLES = """
DROP TABLE IF EXISTS probe_log, probe_pay, probe_receipt;
CREATE TABLE probe_log (id int);
CREATE TABLE probe_pay (id int PRIMARY KEY, status text);
CREATE TABLE probe_receipt (payment_id int);
INSERT INTO probe_pay VALUES (1, 'pending');
"""


async def test_the_probe_sees_each_write_its_transaction_and_the_read_before_it(
    database_url: str,
) -> None:
    url = parse_url(database_url)
    setup: asyncpg.Connection = await connect(url)
    await setup.execute(TABLES)

    async def webhook() -> str:
        """A log row in a transaction of its own, then read-then-write: the shop's webhook."""
        conn: asyncpg.Connection = await connect(url)
        try:
            async with conn.transaction():
                await conn.execute("INSERT INTO probe_log VALUES (1)")
            async with conn.transaction():
                status: str = await conn.fetchval("SELECT status FROM probe_pay WHERE id = 1")
                await conn.execute("UPDATE probe_pay SET status = 'captured' WHERE id = 1")
                await conn.execute("INSERT INTO probe_receipt VALUES (1)")
            return status
        finally:
            await conn.close()

    try:
        status, seen = await probe(database_url, webhook)
        assert status == "pending"
        assert seen.complete
        assert [(w.short, w.transaction, w.after_read) for w in seen.writes] == [
            ("probe_log", 1, False),
            ("probe_pay", 2, True),
            ("probe_receipt", 2, True),
        ]
        assert seen.tables(after_read=True) == ["probe_pay", "probe_receipt"]
        assert seen.describe() == (
            "probe_log (transaction 1, before reading anything); "
            "probe_pay, probe_receipt (transaction 2, after a read)"
        )
        # Nothing of the probe's outlives it: a write goes through at once.
        await setup.execute("SET lock_timeout = '1s'; UPDATE probe_pay SET status = 'x'")
    finally:
        await setup.execute("DROP TABLE probe_log, probe_pay, probe_receipt")
        await setup.close()


@pytest.mark.parametrize(
    ("after_read", "direct", "proves"),
    [
        (True, True, True),  # at racebench's lock, having read: it decided on what it saw
        (False, True, False),  # at racebench's lock before reading: it has decided nothing
        (False, False, True),  # behind a held backend: what it would read is locked
    ],
)
def test_what_makes_a_hold_a_proof(after_read: bool, direct: bool, proves: bool) -> None:
    held = HeldBack(1, (2,), "relation", "UPDATE t", after_read=after_read, direct=direct)
    assert held.proves is proves
