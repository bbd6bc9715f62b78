"""`racebench serve` as a child process: its command, for the service-process machinery of
harness/processes.py (started, awaited until healthy, always stopped).

Used by the race harness's http mode and by the benchmark runner.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from racebench.harness.processes import (
    PORT,
    RunningService,
    ServiceSpec,
)
from racebench.harness.processes import (
    running_service as run_spec,
)
from racebench.reference_service.strategies import import_strategy, is_custom


@dataclass(frozen=True)
class ServeSpec:
    """Which `racebench serve` to start: a strategy on a database."""

    strategy: str
    database_url: str
    workers: int = 1
    port: int | None = None
    log_path: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def service(self) -> ServiceSpec:
        """The process to start, healthy once /healthz names this spec's strategy."""
        # A class of one's own (package.module:Class) answers with its class's name.
        reported = (
            import_strategy(self.strategy).name if is_custom(self.strategy) else self.strategy
        )

        def healthy(response: httpx.Response) -> bool:
            return bool(response.json().get("strategy") == reported)

        return ServiceSpec(
            name=f"racebench serve --strategy {self.strategy}",
            argv=(
                sys.executable,
                "-m",
                "racebench.cli",
                "serve",
                "--strategy",
                self.strategy,
                "--port",
                PORT,
                "--workers",
                str(self.workers),
                "--database-url",
                self.database_url,
            ),
            health="/healthz",
            env={"DATABASE_URL": self.database_url, **self.extra_env},
            port=self.port,
            log_path=self.log_path,
            healthy=healthy,
        )


@contextmanager
def running_service(
    *,
    strategy: str,
    database_url: str,
    workers: int = 1,
    port: int | None = None,
    log_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningService]:
    """Start `racebench serve` in its own process group; yield once /healthz answers ok."""
    spec = ServeSpec(strategy, database_url, workers, port, log_path, extra_env or {})
    with run_spec(spec.service()) as service:
        yield service
