"""`racebench bench --faults`: what goes wrong under the load, on purpose.

While Locust runs, a thread kills the service's database backends every few seconds
(pg_terminate_backend on the round's database: the reference service's by their
application_name, racebench-service; a target's, every backend of its database but the
killer's own) and, once half-way through the round, restarts the whole server (`pg_ctl -m fast
restart` of the embedded PostgreSQL the round owns). After the restart it probes the service's
health URL until it answers 2xx: the time from the restart finishing to that answer is the
recovery time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import asyncpg
import httpx

from racebench.harness.database import EmbeddedPostgres, run_sync
from racebench.results import FaultFigures

DEFAULT_KILL_EVERY_S = 3.0
# Roughly how long Locust takes to start sending: the restart aims at the middle of the load.
LOCUST_START_S = 2.0
PROBE_INTERVAL_S = 0.01
PROBE_TIMEOUT_S = 2.0
# How long the service may take to answer again before the round says it never recovered.
RECOVERY_LIMIT_S = 60.0
# The service's backends: those with its application_name ($1), or ($1 NULL) every backend of
# the database but this one.
KILL_SQL = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $2 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND ($1::text IS NULL OR application_name = $1)
"""


@dataclass
class FaultInjector:
    """Kills backends every `kill_every_s` and restarts `server` once, at `restart_after_s`."""

    server: EmbeddedPostgres
    database_url: str
    database_name: str
    base_url: str
    restart_after_s: float
    kill_every_s: float = DEFAULT_KILL_EVERY_S
    application_name: str | None = None  # the service's backends' (None: every other one)
    health: str = "/healthz"
    figures: FaultFigures = field(default_factory=lambda: FaultFigures())
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FaultInjector:
        self.figures.kill_every_s = self.kill_every_s
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> FaultFigures:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.figures

    def _run(self) -> None:
        started = time.monotonic()
        restarted = False
        next_kill = started + self.kill_every_s
        while not self._stop.is_set():
            now = time.monotonic()
            if not restarted and now - started >= self.restart_after_s:
                restarted = True
                self._restart()
                continue
            if now >= next_kill:
                next_kill = now + self.kill_every_s
                self._kill()
                continue
            self._stop.wait(min(next_kill - now, 0.05))

    def _kill(self) -> None:
        try:
            killed = run_sync(self._terminate())
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            self.figures.kill_errors.append(f"{type(error).__name__}: {error}")
            return
        self.figures.kills += 1
        self.figures.backends_killed += killed

    async def _terminate(self) -> int:
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            return int(await conn.fetchval(KILL_SQL, self.application_name, self.database_name))
        finally:
            await conn.close()

    def _restart(self) -> None:
        began = time.monotonic()
        self.server.restart()
        done = time.monotonic()
        self.figures.restarts += 1
        self.figures.restart_s = round(done - began, 3)
        self.figures.recovery_s = self._probe(done)

    def _probe(self, since: float) -> float | None:
        """Seconds from `since` to the first 2xx of the health URL (None: none within the
        limit)."""
        with httpx.Client(base_url=self.base_url, timeout=PROBE_TIMEOUT_S) as client:
            while time.monotonic() - since < RECOVERY_LIMIT_S:
                try:
                    if 200 <= client.get(self.health).status_code < 300:
                        return round(time.monotonic() - since, 3)
                except httpx.HTTPError:
                    pass
                time.sleep(PROBE_INTERVAL_S)
        return None
