"""The engine, and the one place a transaction opens.

Every write of the service goes through `Database.transaction()`. It owns the isolation level,
the retry on serialization failures, and what must happen only after the commit (releasing an
in-process lock). Timeouts are set once per connection, so no transaction pays a statement for
them and none can hang forever.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reference_service import config
from reference_service.models import metadata

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


class DatabaseBusy(Exception):
    """A lock or statement timeout, or retries exhausted: the request may be retried later."""


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind a SQLAlchemy/asyncpg error, if there is one."""
    orig = getattr(error, "orig", error)
    for attr in ("sqlstate", "pgcode"):
        code = getattr(orig, attr, None)
        if isinstance(code, str):
            return code
    cause = getattr(orig, "__cause__", None)
    code = getattr(cause, "sqlstate", None)
    return code if isinstance(code, str) else None


def async_url(url: str | URL) -> URL:
    """Turn a postgresql:// URL into the asyncpg form SQLAlchemy wants."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql+asyncpg")


def create_engine(
    url: str | URL,
    *,
    pool_size: int = config.POOL_SIZE,
    lock_timeout_ms: int = config.LOCK_TIMEOUT_MS,
) -> AsyncEngine:
    """An engine whose connections carry the service's timeouts."""
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=config.POOL_OVERFLOW,
        pool_timeout=config.POOL_TIMEOUT_S,
        pool_pre_ping=False,
        connect_args={
            "server_settings": {
                "lock_timeout": str(lock_timeout_ms),
                "statement_timeout": str(config.STATEMENT_TIMEOUT_MS),
                "idle_in_transaction_session_timeout": str(config.IDLE_IN_TRANSACTION_TIMEOUT_MS),
                "application_name": "racebench-service",
            }
        },
    )


@dataclass(slots=True)
class Tx:
    """An open transaction: its connection, and a stack that unwinds after commit or rollback."""

    conn: AsyncConnection
    after_end: AsyncExitStack

    async def execute(self, statement: Any, params: Any = None) -> Any:
        return await self.conn.execute(statement, params)


class Database:
    """The service's engine, plus the transaction helper every write goes through."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._isolated: dict[str, AsyncEngine] = {}

    def _engine_for(self, isolation: str | None) -> AsyncEngine:
        if isolation is None:
            return self.engine
        if isolation not in self._isolated:
            self._isolated[isolation] = self.engine.execution_options(isolation_level=isolation)
        return self._isolated[isolation]

    @asynccontextmanager
    async def transaction(self, isolation: str | None = None) -> AsyncIterator[Tx]:
        """One transaction; commits on success, rolls back on error.

        `after_end` callbacks (e.g. releasing an in-process lock) run after the commit or
        rollback, so nothing another request can see is released before it is durable.
        """
        async with AsyncExitStack() as after_end:
            try:
                async with self._engine_for(isolation).begin() as conn:
                    yield Tx(conn, after_end)
            except DBAPIError as error:
                if sqlstate_of(error) in BUSY_SQLSTATES:
                    raise DatabaseBusy(str(error.orig)) from error
                raise

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
            except DBAPIError as error:
                if not retry or sqlstate_of(error) not in RETRYABLE_SQLSTATES:
                    raise
                if attempt == attempts - 1:
                    raise DatabaseBusy(
                        f"gave up after {attempts} attempts: {error.orig}"
                    ) from error
                ceiling = min(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_BASE_S * 2**attempt)
                await asyncio.sleep(random.uniform(0, ceiling))
        raise AssertionError("unreachable")

    async def create_tables(self) -> None:
        """Create the tables if missing (idempotent, safe to race with another worker)."""
        async with self.engine.begin() as conn:
            # Several uvicorn workers start at once; serialise their CREATE TABLEs.
            await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
            await conn.run_sync(metadata.create_all)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
