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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from racebench.reference_service import config, race_points
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

# SQLSTATE classes that mean "the server cannot serve us now", not "your input is wrong":
# 08 connection exception, 53 insufficient resources (too many connections, out of memory or
# disk), 57 operator intervention (admin shutdown, pg_terminate_backend, starting up), 58
# system error (I/O). 57014 (statement timeout) is busy instead, see BUSY_SQLSTATES.
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})

QueryLogger = Callable[[Any], None]


class DatabaseBusy(Exception):
    """A lock or statement timeout, or retries exhausted: the request may be retried later."""


class DatabaseUnavailable(Exception):
    """The connection failed or was lost, or the server refused to serve: retry later."""


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of an asyncpg error, if there is one."""
    code = getattr(error, "sqlstate", None)
    return code if isinstance(code, str) else None


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database connection failed, not that the request was wrong.

    A backend killed by pg_terminate_backend surfaces in many shapes, depending on where the
    protocol was: AdminShutdownError (57P01), ConnectionDoesNotExistError or another
    InterfaceError, ConnectionResetError (an OSError), and asyncpg's InternalClientError
    ("cannot switch to state 15; another operation (2) is in progress", "got result for
    unknown protocol state"), which is neither a PostgresError nor an InterfaceError.
    """
    if isinstance(error, DatabaseUnavailable):
        return True
    if isinstance(error, asyncpg.exceptions.DataError):
        return False  # an argument asyncpg cannot encode: our bug, not the database's state
    if isinstance(error, OSError | asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        return True
    code = sqlstate_of(error) if isinstance(error, asyncpg.PostgresError) else None
    return code is not None and code[:2] in UNAVAILABLE_SQLSTATE_CLASSES and code != QUERY_CANCELED


def _unavailable(error: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"{type(error).__name__}: {error}")


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


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Give the connection back; one that died is dropped (the pool opens a new one later).

    A failed release must not replace what the request already has: its answer, or the error
    that says why it has none.
    """
    try:
        await pool.release(conn)
    except Exception as error:  # the pool has terminated the connection already
        if not is_unavailable(error):
            raise


@dataclass(slots=True)
class _Line:
    turns: asyncio.Semaphore
    queued: int = 0


class PerKeyLimit:
    """At most `limit` holders per key at once; the rest wait in line, up to `wait_s`, then
    DatabaseBusy (503 busy, Retry-After). Keys are dropped when nobody holds or waits."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self._lines: dict[Hashable, _Line] = {}

    def queued(self, key: Hashable) -> int:
        """How many requests hold or wait for a turn on `key`."""
        line = self._lines.get(key)
        return line.queued if line is not None else 0

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(asyncio.Semaphore(self.limit))
        line.queued += 1
        try:
            try:
                async with asyncio.timeout(self.wait_s):
                    await line.turns.acquire()
            except TimeoutError:
                raise DatabaseBusy(f"{self.limit} requests on it are in the way") from None
            try:
                yield
            finally:
                line.turns.release()
        finally:
            line.queued -= 1
            if line.queued == 0:
                del self._lines[key]


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
        self.per_payment = PerKeyLimit(config.MAX_CONNECTIONS_PER_PAYMENT, lock_timeout_ms / 1000)
        """Turns on one payment: see `run(..., key=)`."""

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
        try:
            # Opening the pool connects: a timeout there is a database that does not answer
            # (down, restarting), not a busy pool.
            pool = await self.pool()
        except Exception as error:
            if isinstance(error, TimeoutError) or is_unavailable(error):
                raise _unavailable(error) from error
            raise
        try:
            conn = await pool.acquire(timeout=config.POOL_TIMEOUT_S)
        except TimeoutError:
            raise DatabaseBusy("no free database connection") from None
        except Exception as error:
            if is_unavailable(error):
                raise _unavailable(error) from error
            raise
        try:
            yield conn
        except Exception as error:
            if is_unavailable(error):
                raise _unavailable(error) from error
            raise
        finally:
            await _release(pool, conn)

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
            race_points.current_backend.set(conn.get_server_pid())
            committed = False
            try:
                async with conn.transaction(isolation=isolation):  # type: ignore[arg-type]
                    yield Tx(conn, after_end)
                    committing = time.perf_counter()
                committed = True
                # Reported from the commit path itself, with the moment COMMIT was sent (a
                # harness's timeline; free without one), before anything else can happen.
                await race_points.race_point(race_points.RacePoint.AFTER_COMMIT, committing)
            except asyncpg.PostgresError as error:
                if not committed:  # its locks are gone: a waiter's wait ends here
                    await race_points.race_point(race_points.RacePoint.AFTER_ROLLBACK)
                if sqlstate_of(error) in BUSY_SQLSTATES:
                    raise DatabaseBusy(str(error)) from error
                raise
            except Exception:
                if not committed:
                    await race_points.race_point(race_points.RacePoint.AFTER_ROLLBACK)
                raise
            finally:
                race_points.current_backend.set(None)
                if logger is not None:
                    conn.remove_query_logger(logger)

    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        isolation: str | None = None,
        retry: bool = False,
        key: Hashable | None = None,
    ) -> T:
        """Run `work` in a transaction; with `retry`, run it again after a serialization
        failure or deadlock, with a bounded, jittered exponential backoff.

        With `key` (the payment the work locks), it waits its turn among the requests on that
        key first, without holding a connection: see config.MAX_CONNECTIONS_PER_PAYMENT.
        """
        if key is None:
            return await self._run(work, isolation, retry)
        async with self.per_payment.turn(key):
            return await self._run(work, isolation, retry)

    async def _run(
        self, work: Callable[[Tx], Awaitable[T]], isolation: str | None, retry: bool
    ) -> T:
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
        except (DatabaseUnavailable, DatabaseBusy, asyncpg.PostgresError):
            return False

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
