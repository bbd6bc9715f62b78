"""The pool of pending payments, seeded in bulk with SQL before each run (not over HTTP).

Payment `n` of a pool has invoice `n` (of the same amount), the Razorpay order id
`order_rb<n, 12 digits>` and, once paid, the Razorpay payment id `pay_rb<n, 12 digits>`. Both
are derived from the id, so a Locust process on any machine needs only the pool's first id and
size to address every payment and sign real requests for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from racebench.harness.database import connect, parse_url, run_sync

# One rupee thousand, in paise: any positive amount will do, one is enough.
DEFAULT_AMOUNT = 100_000
CURRENCY = "INR"
ID_DIGITS = 12

SEED_INVOICES = """
INSERT INTO invoices (id, amount, currency)
    SELECT g, $3::bigint, $4::text FROM generate_series($1::bigint, $2::bigint) AS g
"""
SEED_PAYMENTS = f"""
INSERT INTO payments (id, invoice_id, amount, currency, razorpay_order_id)
    SELECT g, g, $3::bigint, $4::text, 'order_rb' || lpad(g::text, {ID_DIGITS}, '0')
    FROM generate_series($1::bigint, $2::bigint) AS g
"""
# Payments the service creates later must not collide with the seeded ids.
ADVANCE_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('invoices', 'id'), $1::bigint),
       setval(pg_get_serial_sequence('payments', 'id'), $1::bigint)
"""


def order_id(payment_id: int) -> str:
    return f"order_rb{payment_id:0{ID_DIGITS}d}"


def razorpay_payment_id(payment_id: int) -> str:
    return f"pay_rb{payment_id:0{ID_DIGITS}d}"


@dataclass(frozen=True, slots=True)
class Pool:
    """Payments first .. first + size - 1, all pending, each on its own invoice of `amount`."""

    first: int
    size: int
    amount: int = DEFAULT_AMOUNT

    @property
    def last(self) -> int:
        return self.first + self.size - 1

    def at(self, k: int) -> tuple[int, bool]:
        """The payment id of item k, and whether the pool ran out (the id is then reused)."""
        return self.first + k % self.size, k >= self.size

    def after(self, size: int) -> Pool:
        """A pool of `size` payments right after this one."""
        return Pool(self.last + 1, size, self.amount)


async def _seed(database_url: str, pools: tuple[Pool, ...]) -> None:
    conn = await connect(parse_url(database_url))
    try:
        async with conn.transaction():
            for pool in pools:
                for statement in (SEED_INVOICES, SEED_PAYMENTS):
                    await conn.execute(statement, pool.first, pool.last, pool.amount, CURRENCY)
            await conn.execute(ADVANCE_SEQUENCES, max(p.last for p in pools))
        await conn.execute("ANALYZE invoices; ANALYZE payments")
    finally:
        await conn.close()


def seed(database_url: str, *pools: Pool) -> None:
    """Insert every pool's pending payments into `database_url`.

    The tables must exist: `racebench serve` creates them at start, so seed after it is up.
    """
    if not pools:
        raise ValueError("seed() needs at least one pool")
    run_sync(_seed(database_url, pools))
