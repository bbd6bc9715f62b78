"""Where racebench's PostgreSQL comes from: DATABASE_URL, or an embedded server.

`provision()` yields a fresh, empty database for one run and drops it afterwards. With no URL
it starts an embedded PostgreSQL (pgserver) in a temporary folder and stops it at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError

T = TypeVar("T")

# Connecting to a healthy local server takes milliseconds; a firewall drop would hang forever.
CONNECT_TIMEOUT_S = 10.0
DATABASE_PREFIX = "racebench_"


class DatabaseError(RuntimeError):
    """A one-line, user-facing problem with the database URL or server."""


def redact(url: str | URL) -> str:
    """The URL with its password hidden."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """A postgresql:// URL, or DatabaseError saying what is wrong with it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"DATABASE_URL {url!r} is not a URL; expected postgresql://user:password@host:port/db"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(
            f"DATABASE_URL {redact(parsed)} is not a PostgreSQL URL; "
            "expected postgresql://user:password@host:port/db"
        )
    return parsed.set(drivername="postgresql")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even if a loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def connect(url: URL) -> asyncpg.Connection:
    """An asyncpg connection, or DatabaseError naming the (redacted) URL and what to do."""
    query = dict(url.query)
    host = query.pop("host", None) or url.host
    try:
        return await asyncpg.connect(
            user=url.username,
            password=url.password,
            host=host,
            port=url.port,
            database=url.database,
            timeout=CONNECT_TIMEOUT_S,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatabaseError(
            f"cannot reach PostgreSQL at {redact(url)}: {reason}. Start the server or fix "
            "--database-url / DATABASE_URL (leave both unset to use the embedded server)."
        ) from None


async def _ping(url: URL) -> None:
    conn = await connect(url)
    await conn.close()


async def _create(admin_url: URL, name: str) -> None:
    conn = await connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError as error:
        raise DatabaseError(
            f"cannot create database {name} at {redact(admin_url)}: {error}"
        ) from None
    finally:
        await conn.close()


async def _drop(admin_url: URL, name: str) -> None:
    conn = await connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True)
class ProvisionedDatabase:
    """A fresh database for one run."""

    url: str  # postgresql://... (works for psql, asyncpg, and `racebench serve`)
    name: str
    embedded: bool
    owned_server: EmbeddedPostgres | None = None  # with provision(owned=True): restartable

    @property
    def redacted(self) -> str:
        return redact(self.url)


class EmbeddedPostgres:
    """A real PostgreSQL started by pgserver in a temp folder, stopped explicitly."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="racebench-pg-"))
        self._server: Any = None

    def start(self) -> URL:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (normal for root in a container).
            warnings.simplefilter("ignore")
            import pgserver

            try:
                self._server = pgserver.get_server(self._dir / "pgdata", cleanup_mode="stop")
            except Exception as error:
                raise DatabaseError(f"could not start the embedded PostgreSQL: {error}") from None
        atexit.register(self.stop)
        return make_url(self._server.get_uri())

    def restart(self, timeout_s: float = 60.0) -> None:
        """A fast restart (`pg_ctl -m fast restart`): every connection is cut, the server comes
        back on the same socket with the same options."""
        if self._server is None:
            raise DatabaseError("the embedded PostgreSQL is not running")
        from pgserver._commands import POSTGRES_BIN_PATH

        pg_ctl, pgdata, log = POSTGRES_BIN_PATH / "pg_ctl", self._server.pgdata, self._server.log
        done = subprocess.run(
            [pg_ctl, "-D", pgdata, "-w", "-m", "fast", "-l", log, "restart"],
            user=self._server.system_user,  # pgserver runs PostgreSQL as its own user as root
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise DatabaseError(f"could not restart the embedded PostgreSQL: {done.stderr.strip()}")

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            with contextlib.suppress(Exception):  # already gone: nothing left to stop
                server.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def server(url: str | None = None) -> Iterator[tuple[URL, bool]]:
    """A reachable PostgreSQL server: (admin URL, embedded?).

    `url` defaults to $DATABASE_URL; with neither, an embedded server runs until exit.
    """
    with _server(url, owned=False) as (admin_url, embedded):
        yield admin_url, embedded is not None


@contextmanager
def _server(url: str | None, *, owned: bool) -> Iterator[tuple[URL, EmbeddedPostgres | None]]:
    """(admin URL, the embedded server if this run started one). `owned`: always start an
    embedded server, whatever `url` and $DATABASE_URL say."""
    url = None if owned else (url or os.environ.get("DATABASE_URL") or None)
    if url is not None:
        parsed = parse_url(url)
        run_sync(_ping(parsed))
        yield parsed, None
        return
    embedded = EmbeddedPostgres()
    try:
        yield embedded.start(), embedded
    finally:
        embedded.stop()


@contextmanager
def provision(url: str | None = None, *, owned: bool = False) -> Iterator[ProvisionedDatabase]:
    """A fresh, empty database on `server(url)`; dropped on exit. `owned`: on an embedded
    server started for it (even if a URL is given), which the caller may restart."""
    with _server(url, owned=owned) as (admin_url, embedded):
        name = f"{DATABASE_PREFIX}{secrets.token_hex(6)}"
        run_sync(_create(admin_url, name))
        try:
            yield ProvisionedDatabase(
                url=render(admin_url.set(database=name)),
                name=name,
                embedded=embedded is not None,
                owned_server=embedded if owned else None,
            )
        finally:
            run_sync(_drop(admin_url, name))


def render(url: URL) -> str:
    """The URL as a string, password included (for handing to a child process)."""
    return url.render_as_string(hide_password=False)
