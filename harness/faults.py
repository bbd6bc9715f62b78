"""The database faults a schedule injects (the `Faults` of harness/controller.py).

- kill a backend: pg_terminate_backend, on the harness's monitor connection;
- hold a row lock: `SELECT ... FOR UPDATE` on a connection of its own, in a transaction kept
  open for the block (a held lock must not share the monitor's connection: a transaction there
  would freeze the monitor's view of pg_stat_activity, which PostgreSQL snapshots per
  transaction);
- restart the database server: only the embedded PostgreSQL this run started
  (harness/database.py's EmbeddedPostgres); any other server is not ours to restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from racebench.harness.database import EmbeddedPostgres, connect, parse_url
from racebench.harness.locks import Monitor

# The holder's own statements: the lock is granted at once (nobody else holds it before the
# actor starts); this only bounds a lock some leftover transaction still holds.
HOLDER_LOCK_TIMEOUT_MS = 10_000
# A held lock never outlives this, whatever happens to the step that holds it.
HOLDER_IDLE_TIMEOUT_MS = 60_000

LOCK_PAYMENT_ROW = "SELECT id FROM payments WHERE id = $1 FOR UPDATE"


class DatabaseFaults:
    """Faults on the run's database: `monitor` kills, `database_url` holds locks, `server`
    (if this run owns it) restarts."""

    def __init__(
        self, monitor: Monitor, database_url: str, server: EmbeddedPostgres | None = None
    ) -> None:
        self.monitor = monitor
        self.database_url = database_url
        self.server = server

    async def terminate(self, pid: int) -> bool:
        return await self.monitor.terminate(pid)

    @asynccontextmanager
    async def hold_row_lock(self, payment_id: int) -> AsyncIterator[int]:
        conn = await connect(parse_url(self.database_url))
        try:
            await conn.execute(
                f"SET lock_timeout = {HOLDER_LOCK_TIMEOUT_MS}; "
                f"SET idle_in_transaction_session_timeout = {HOLDER_IDLE_TIMEOUT_MS}"
            )
            async with conn.transaction():
                locked = await conn.fetchval(LOCK_PAYMENT_ROW, payment_id)
                if locked is None:
                    raise LookupError(f"payment {payment_id} is not there to lock")
                yield conn.get_server_pid()
        finally:
            await conn.close()

    def cannot_restart(self) -> str | None:
        if self.server is None:
            return (
                "the harness does not own this PostgreSQL server (only the embedded one it "
                "starts itself can be restarted)"
            )
        return None

    async def restart(self) -> float:
        if self.server is None:
            raise RuntimeError(self.cannot_restart())
        started = time.perf_counter()
        await asyncio.to_thread(self.server.restart)
        took = time.perf_counter() - started
        await self.monitor.reconnect()
        return took
