"""A real statement log of 100,000 lines or more, and how long read_log_file takes over it.

    .venv/bin/python benchmarks/hints_log.py [--lines 100000] [--workers 16] [--keep PATH]

An embedded PostgreSQL (pgserver) of its own logs every statement (log_statement = 'all',
log_line_prefix = RECOMMENDED_PREFIX; --durations adds log_min_duration_statement = 0) into its
log file, while `--workers` asyncpg connections run capture-like transactions on random
payments until the file has `--lines` lines:

    BEGIN; SELECT ... FROM payments WHERE id = $1; UPDATE payments ...; INSERT INTO receipts ...;
    COMMIT

Then `read_log_file` reads the log `--repeat` times (the figure: the fastest and the median),
and pglast parses every statement read (what the analysis after it costs at the least).
`--keep PATH` copies the log to PATH, to time `racebench hints --log PATH` on it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
from pathlib import Path

import asyncpg
import pglast

from racebench.harness.database import provision
from racebench.harness.hints.statement_log import RECOMMENDED_PREFIX, read_log_file

PAYMENTS = 5_000  # enough that two workers seldom wait on one row
PROGRESS_EVERY_S = 2.0  # how often the generator prints how far the log has got
CHECK_EVERY_S = 0.05  # how often it counts the log's lines (a few hundred more each time)

SCHEMA = f"""
CREATE TABLE payments (
    id int PRIMARY KEY, status text NOT NULL, amount bigint NOT NULL, captured_at timestamptz
);
CREATE TABLE receipts (id bigserial PRIMARY KEY, payment_id int NOT NULL, amount bigint NOT NULL);
INSERT INTO payments SELECT i, 'pending', 100000 FROM generate_series(1, {PAYMENTS}) AS i;
"""
READ = "SELECT id, status, amount FROM payments WHERE id = $1"
CAPTURE = "UPDATE payments SET status = 'captured', captured_at = now() WHERE id = $1"
RECEIPT = "INSERT INTO receipts (payment_id, amount) VALUES ($1, $2)"


async def configure(url: str, durations: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{RECOMMENDED_PREFIX}'")
        await conn.execute("ALTER SYSTEM SET lc_messages = 'C'")
        if durations:
            await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
    finally:
        await conn.close()


class LineCounter:
    """Counts a growing file's lines, reading only what was added since the last count."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        with self.path.open("rb") as file:
            file.seek(self.offset)
            added = file.read()
        self.offset += len(added)
        self.lines += added.count(b"\n")
        return self.lines


async def capture(conn: asyncpg.Connection, rng: random.Random, literals: bool = False) -> None:
    payment = rng.randint(1, PAYMENTS)
    async with conn.transaction():
        if literals:  # the simple protocol, values in the text: every statement's text differs
            await conn.execute(READ.replace("$1", str(payment)))
            await conn.execute(CAPTURE.replace("$1", str(payment)))
            amount = str(rng.randint(1, 10**9))
            await conn.execute(RECEIPT.replace("$1", str(payment)).replace("$2", amount))
            return
        row = await conn.fetchrow(READ, payment)
        await conn.execute(CAPTURE, payment)
        await conn.execute(RECEIPT, payment, row["amount"])


async def generate(url: str, log: Path, lines: int, workers: int, literals: bool = False) -> int:
    """Capture-like transactions on `workers` connections until `log` has `lines` lines; the
    number of transactions run."""
    counter = LineCounter(log)
    start_lines = counter.count()
    done = asyncio.Event()
    transactions = 0

    async def worker(n: int) -> None:
        nonlocal transactions
        rng = random.Random(n)
        conn = await asyncpg.connect(url, server_settings={"application_name": f"capture-{n}"})
        try:
            while not done.is_set():
                await capture(conn, rng, literals)
                transactions += 1
        finally:
            await conn.close()

    async def watch() -> None:
        started = shown = time.perf_counter()
        while counter.count() < lines:
            if time.perf_counter() - shown >= PROGRESS_EVERY_S:
                shown = time.perf_counter()
                print(
                    f"  {counter.lines:>9,} lines, {transactions:>7,} transactions, "
                    f"{shown - started:5.1f} s",
                    flush=True,
                )
            await asyncio.sleep(CHECK_EVERY_S)
        done.set()

    print(f"generating: {workers} connections until the log has {lines:,} lines ...")
    print(
        f"  {start_lines:>9,} lines already (the server's start, the settings' restart)",
        flush=True,
    )
    await asyncio.gather(watch(), *(worker(n) for n in range(workers)))
    return transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="at least this many lines")
    parser.add_argument("--workers", type=int, default=16, help="concurrent connections")
    parser.add_argument("--repeat", type=int, default=5, help="times read_log_file is timed")
    parser.add_argument("--durations", action="store_true", help="log_min_duration_statement=0")
    parser.add_argument(
        "--literals",
        action="store_true",
        help="values written into the SQL (simple protocol): no two statements alike",
    )
    parser.add_argument("--keep", type=Path, default=None, help="copy the log to this path")
    args = parser.parse_args()

    with provision(owned=True) as db:
        server = db.owned_server
        assert server is not None
        asyncio.run(configure(db.url, args.durations))
        server.restart()  # the settings, for every connection from here on
        log = Path(server._server.log)  # pgserver's `pg_ctl -l` file: every backend's stderr
        started = time.perf_counter()
        ran = asyncio.run(generate(db.url, log, args.lines, args.workers, args.literals))
        generating = time.perf_counter() - started
        if args.keep is not None:
            shutil.copyfile(log, args.keep)
        size = log.stat().st_size
        total = LineCounter(log).count()
        print(
            f"generated: {total:,} lines ({size / 1e6:.1f} MB), {ran:,} transactions run, "
            f"in {generating:.1f} s" + (f"; kept as {args.keep}" if args.keep else "")
        )

        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            transactions = read_log_file(log, RECOMMENDED_PREFIX)
            timings.append(time.perf_counter() - started)
    statements = [sql for t in transactions for sql in t.statements]
    failed = sum(t.failed for t in transactions)
    best, median = min(timings), statistics.median(timings)
    print(
        f"read_log_file: {total:,} lines, {len(transactions):,} transactions "
        f"({failed:,} failed), {len(statements):,} statements: best {best:.3f} s, "
        f"median {median:.3f} s of {args.repeat} ({total / best / 1e3:,.0f}k lines/s)"
    )

    started = time.perf_counter()
    for sql in statements:
        pglast.parse_sql(sql)
    every = time.perf_counter() - started
    distinct = set(statements)
    started = time.perf_counter()
    for sql in distinct:
        pglast.parse_sql(sql)
    once = time.perf_counter() - started
    print(
        f"pglast.parse_sql: every statement {every:.3f} s; "
        f"the {len(distinct)} distinct texts once {once:.4f} s"
    )


if __name__ == "__main__":
    main()
