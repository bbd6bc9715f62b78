"""A target's service started behind racebench's proxy: the service is handed the proxy's URL
as `{database_url}`, racebench's own connection (payments, invariants, pg_blocking_pids) goes
straight to the database, and the scheduler is the session's launcher.

The proxy runs on this event loop; the service is started (and stopped) in a thread, so that
the proxy answers while the service connects and its health check runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from racebench.harness.database import parse_url
from racebench.harness.explore.proxy import Proxy
from racebench.harness.explore.scheduler import SchedulerLauncher
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.service import running, target_database
from racebench.harness.target.session import Session


class CannotExplore(ValueError):
    """The target cannot be explored here (its service is not racebench's to start)."""


@dataclass(frozen=True)
class Behind:
    """A target's service behind the proxy, with the session and the scheduler."""

    session: Session
    proxy: Proxy
    launcher: SchedulerLauncher


def upstream_of(database_url: str) -> tuple[str, int]:
    """Where the proxy relays to: the URL's host (or its ?host= socket folder) and port."""
    url = parse_url(database_url)
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    return str(host or "127.0.0.1"), int(url.port or 5432)


@asynccontextmanager
async def behind_proxy(
    spec: TargetSpec,
    variant: str | None,
    *,
    database_url: str | None = None,
    workers: int | None = None,
) -> AsyncIterator[Behind]:
    """Start the target's service behind a new proxy; stop both (and drop a database racebench
    made) at the end, however it ends."""
    if spec.service.command is None:
        raise CannotExplore(
            f"{spec.path}: [service].command is not set. racebench explore and racebench hints "
            "start the service themselves, behind racebench's proxy, and hand it the proxy's "
            "URL as {database_url}"
        )
    with target_database(spec, database_url) as database:
        host, port = upstream_of(database.url)
        async with Proxy(host, port) as proxy:
            service = running(
                spec,
                variant,
                database.url,
                workers=workers,
                service_database_url=proxy.url_for(database.url),
            )
            target = await asyncio.to_thread(service.__enter__)
            try:
                async with Session.open(target, use_barrier=False, database=database) as session:
                    launcher = SchedulerLauncher(proxy, session.db)
                    yield Behind(session, proxy, launcher)
            finally:
                await asyncio.to_thread(service.__exit__, None, None, None)


__all__ = ["Behind", "CannotExplore", "behind_proxy", "upstream_of"]
