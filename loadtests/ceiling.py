"""The ceiling: pgbench running the capture transaction itself, with no HTTP and no Python.

The script is the statements the `for_update` checkout path sends for one capture of a pending
payment (reference_service/strategies/base.py, for_update.py and writes.py), on random payments
of a seeded pool: lock and read the payment, lock and read the invoice, then every write (the
payment, the invoice, allocation, receipt and audit event) in one statement. The service's
verify throughput over this rate says how much of what the database can do the service turns
into answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from racebench.harness.database import provision
from racebench.harness.service_process import running_service
from racebench.loadtests.cell import NOBODY
from racebench.loadtests.config import BenchConfig
from racebench.loadtests.pool import Pool, seed
from racebench.progress import Progress

# pgbench peaks at about 16 clients on this 2-core machine (reference_service/config.py), and
# the service's pool is 20: the same order of concurrency for both.
PGBENCH_CLIENTS = 16
# Long enough for a steady rate; the bench's own rounds are usually longer.
PGBENCH_MAX_S = 30
# pgbench runs exactly its -T; past this much longer, something is stuck.
PGBENCH_EXIT_GRACE_S = 60
FALLBACK_PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

CAPTURE_SCRIPT = """\\set pid random({first}, {last})
BEGIN;
SELECT id, invoice_id, amount, currency, status, razorpay_order_id, razorpay_payment_id,
       captured_via, version FROM payments WHERE id = :pid FOR UPDATE;
SELECT amount, amount_paid FROM invoices WHERE id = :pid FOR UPDATE;
WITH payment AS (
    UPDATE payments SET status = 'captured', razorpay_payment_id = 'pay_pgbench',
           captured_via = 'client', captured_at = now(), version = version + 1
    WHERE id = :pid
), invoice AS (
    UPDATE invoices SET amount_paid = amount_paid + {amount}, status = 'paid' WHERE id = :pid
), allocation AS (
    INSERT INTO payment_allocations (payment_id, invoice_id, amount) VALUES (:pid, :pid, {amount})
), receipt AS (
    INSERT INTO receipts (payment_id) VALUES (:pid)
)
INSERT INTO payment_events (payment_id, from_status, to_status, source)
VALUES (:pid, 'pending', 'captured', 'client');
END;
"""
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


@dataclass(frozen=True)
class Ceiling:
    tps: float
    clients: int
    threads: int
    duration_s: int
    transactions: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pgbench_path() -> str:
    return shutil.which("pgbench") or FALLBACK_PGBENCH


def script(pool: Pool) -> str:
    """The capture transaction as a pgbench script over `pool`.

    pgbench reads a statement up to its semicolon, across lines, so the SQL keeps its shape.
    """
    return CAPTURE_SCRIPT.format(first=pool.first, last=pool.last, amount=pool.amount)


def run_pgbench(database_url: str, pool: Pool, duration_s: float) -> Ceiling:
    """Run the capture script against a seeded pool; its rate in transactions per second."""
    url = make_url(database_url)
    seconds = max(1, min(PGBENCH_MAX_S, round(duration_s)))
    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="racebench-pgbench-") as folder:
        script_path = Path(folder) / "capture.sql"
        script_path.write_text(script(pool))
        command = [
            pgbench_path(),
            "--no-vacuum",
            "--protocol=prepared",
            f"--client={PGBENCH_CLIENTS}",
            f"--jobs={threads}",
            f"--time={seconds}",
            f"--file={script_path}",
            f"--host={url.query.get('host') or url.host or '127.0.0.1'}",  # socket dir too
            f"--port={url.port or 5432}",
            f"--username={url.username or 'postgres'}",
            url.database or "postgres",
        ]
        env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + PGBENCH_EXIT_GRACE_S,
            check=False,
        )
    match = _TPS.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    return Ceiling(
        tps=round(float(match.group(1)), 1),
        clients=PGBENCH_CLIENTS,
        threads=threads,
        duration_s=seconds,
        transactions=int(processed.group(1)) if processed else 0,
    )


def measure_ceiling(config: BenchConfig, progress: Progress[Ceiling] | None = None) -> Ceiling:
    """pgbench's rate for the capture transaction, on a fresh database seeded like a cell's."""
    shown: Progress[Ceiling] = progress or NOBODY
    pool, _ = config.pools()
    with provision(config.database_url) as database:
        shown.phase("tables")
        with running_service(strategy="for_update", database_url=database.url):
            pass  # the service creates its tables at start; pgbench needs nothing else of it
        shown.phase("seeding")
        seed(database.url, pool)
        shown.phase("pgbench")
        ceiling = run_pgbench(database.url, pool, config.duration_s)
    shown.finished(ceiling)
    return ceiling
