"""Connections, and the one place a transaction opens.

Every write of the service goes through `Database.run()` / `Database.transaction()`. They own
the isolation level, the retry on serialization failures, and what must happen only after the
commit (releasing an in-process lock). Timeouts are set once per connection, so no transaction
pays a statement for them and none can hang forever.

SQLAlchemy owns the schema (models.py) and creates it. The request path talks to asyncpg
directly, through a pool of its own: the capture is a handful of short statements, and
SQLAlchemy's per-statement work (compile-cache lookup, greenlet hop, result wrapping) cost
more than the statements themselves here (about 1.4 ms against 0.6 ms per capture, measured
with benchmarks/verify_inprocess.py's method). The SQL stays visible, which suits a reference
implementation of locking: `SELECT ... FOR UPDATE` is in the code, not behind a builder.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from racebench.reference_service import config
from racebench.reference_service.models import metadata

T = TypeVar("T")

# SQLSTATEs after which the whole transaction may simply be run again.
SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})
# SQLSTATEs that mean "busy, come back later": the caller answers 503 with Retry-After.
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
QUERY_CANCELED = "57014"  # statement_timeout
BUSY_SQLSTATES = frozenset({LOCK_NOT_AVAILABLE, QUERY_CANCELED})

# Serializable retries: a conflict between two captures of one payment resolves on the first
# retry (the loser then sees "captured"); 10 leaves room for 100-way contention on one row.
MAX_TRANSACTION_ATTEMPTS = 10
# Backoff base and cap: a capture takes ~1 ms, so retrying sooner mostly meets the same conflict.
RETRY_BACKOFF_BASE_S = 0.002
RETRY_BACKOFF_CAP_S = 0.05
# Connecting to a local server takes milliseconds; this only bounds a dead or firewalled one.
CONNECT_TIMEOUT_S = 10.0
# Serialise CREATE TABLE across uvicorn workers that start at the same moment.
CREATE_TABLES_LOCK_KEY = 727_274

QueryLogger = Callable[[Any], None]


class DatabaseBusy(Exception):
    """A lock or statement timeout, or retries exhausted: the request may be retried later."""


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of an asyncpg error, if there is one."""
    code = getattr(error, "sqlstate", None)
    return code if isinstance(code, str) else None


def parse_database_url(url: str | URL) -> URL:
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed


def connect_kwargs(url: str | URL, *, lock_timeout_ms: int) -> dict[str, Any]:
    """asyncpg connection arguments, with the service's timeouts as session settings."""
    parsed = parse_database_url(url)
    query = dict(parsed.query)
    return {
        "user": parsed.username,
        "password": parsed.password,
        "host": query.get("host") or parsed.host,
        "port": parsed.port,
        "database": parsed.database,
        "timeout": CONNECT_TIMEOUT_S,
        "server_settings": {
            "lock_timeout": str(lock_timeout_ms),
            "statement_timeout": str(config.STATEMENT_TIMEOUT_MS),
            "idle_in_transaction_session_timeout": str(config.IDLE_IN_TRANSACTION_TIMEOUT_MS),
            "application_name": config.APPLICATION_NAME,
        },
    }


async def _end_open_transaction(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: no open transaction.

    asyncpg's default reset also runs `RESET ALL; CLOSE ALL; UNLISTEN *; ...`, one more round
    trip per request. The service keeps no session state (its advisory locks are
    transaction-scoped and its settings are connection defaults), so that trip buys nothing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@dataclass(slots=True)
class Tx:
    """An open transaction: its connection, and a stack that unwinds after commit or rollback."""

    conn: asyncpg.Connection
    after_end: AsyncExitStack

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a write; return how many rows it touched."""
        status: str = await self.conn.execute(sql, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0


class Database:
    """The service's connection pool, plus the transaction helper every write goes through."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = config.POOL_SIZE,
        lock_timeout_ms: int = config.LOCK_TIMEOUT_MS,
    ) -> None:
        self.url = parse_database_url(url)
        self.pool_size = pool_size
        self._connect = connect_kwargs(self.url, lock_timeout_ms=lock_timeout_ms)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self.query_logger: QueryLogger | None = None
        """If set, sees every statement a transaction sends (for tests that count them)."""

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened on first use."""
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        min_size=1,
                        max_size=self.pool_size,
                        reset=_end_open_transaction,
                        **self._connect,
                    )
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, outside any transaction (for plain reads)."""
        pool = await self.pool()
        try:
            conn = await pool.acquire(timeout=config.POOL_TIMEOUT_S)
        except TimeoutError:
            raise DatabaseBusy("no free database connection") from None
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def transaction(self, isolation: str | None = None) -> AsyncIterator[Tx]:
        """One transaction; commits on success, rolls back on error.

        `after_end` callbacks (e.g. releasing an in-process lock) run after the commit or
        rollback, so nothing another request can see is released before it is durable.
        """
        async with AsyncExitStack() as after_end, self.connection() as conn:
            logger = self.query_logger
            if logger is not None:
                conn.add_query_logger(logger)
            try:
                async with conn.transaction(isolation=isolation):  # type: ignore[arg-type]
                    yield Tx(conn, after_end)
            except asyncpg.PostgresError as error:
                if sqlstate_of(error) in BUSY_SQLSTATES:
                    raise DatabaseBusy(str(error)) from error
                raise
            finally:
                if logger is not None:
                    conn.remove_query_logger(logger)

    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        isolation: str | None = None,
        retry: bool = False,
    ) -> T:
        """Run `work` in a transaction; with `retry`, run it again after a serialization
        failure or deadlock, with a bounded, jittered exponential backoff."""
        attempts = MAX_TRANSACTION_ATTEMPTS if retry else 1
        for attempt in range(attempts):
            try:
                async with self.transaction(isolation) as tx:
                    return await work(tx)
            except asyncpg.PostgresError as error:
                if not retry or sqlstate_of(error) not in RETRYABLE_SQLSTATES:
                    raise
                if attempt == attempts - 1:
                    raise DatabaseBusy(f"gave up after {attempts} attempts: {error}") from error
                ceiling = min(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_BASE_S * 2**attempt)
                await asyncio.sleep(random.uniform(0, ceiling))
        raise AssertionError("unreachable")

    async def create_tables(self) -> None:
        """Create the tables if missing (idempotent, safe to race with another worker)."""
        engine = create_async_engine(self.url.set(drivername="postgresql+asyncpg"))
        try:
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    f"SELECT pg_advisory_xact_lock({CREATE_TABLES_LOCK_KEY})"
                )
                await conn.run_sync(metadata.create_all)
        finally:
            await engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
            return True
        except (OSError, asyncpg.PostgresError, DatabaseBusy, TimeoutError):
            return False

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
