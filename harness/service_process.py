"""`racebench serve` as a child process: started, awaited until healthy, always stopped.

Used by the race harness's http mode and by the benchmark runner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from racebench.reference_service.strategies import import_strategy, is_custom

# uvicorn with several workers imports the app in each; on a busy 2-core machine that can take
# several seconds, and pgserver-backed runs add a little more.
STARTUP_TIMEOUT_S = 60.0
# Between health probes while the service starts (a probe is a cheap local request).
HEALTH_POLL_INTERVAL_S = 0.1
# A graceful stop lets uvicorn finish in-flight requests; past this we kill the group.
SHUTDOWN_TIMEOUT_S = 15.0


class ServiceStartError(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningService:
    base_url: str
    strategy: str
    workers: int
    pid: int


@dataclass(frozen=True)
class ServiceSpec:
    """What `racebench serve` to start: a strategy on a database."""

    strategy: str
    database_url: str
    workers: int = 1
    port: int | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] | None = None


@contextmanager
def running_service(
    *,
    strategy: str,
    database_url: str,
    workers: int = 1,
    port: int | None = None,
    log_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[RunningService]:
    """Start `racebench serve` in its own process group; yield once /healthz answers ok."""
    spec = ServiceSpec(strategy, database_url, workers, port, log_path, extra_env)
    with running_services([spec]) as (service,):
        yield service


@contextmanager
def running_services(specs: Sequence[ServiceSpec]) -> Iterator[list[RunningService]]:
    """Start every spec's service at once (they boot side by side); yield once each answers
    /healthz; stop them all on exit, however it comes."""
    with ExitStack() as stack:
        started: list[tuple[ServiceSpec, subprocess.Popen[bytes], str]] = []
        stack.callback(lambda: stop_process_groups([process for _, process, _ in started]))
        for spec in specs:
            taken = {int(url.rsplit(":", 1)[1]) for _, _, url in started}
            if spec.port in taken:
                raise ValueError(f"two services on port {spec.port}")
            port = spec.port or free_port()
            while port in taken:
                port = free_port()  # picked before the others bound theirs: pick again
            env = {**os.environ, "DATABASE_URL": spec.database_url, **(spec.extra_env or {})}
            command = [
                sys.executable,
                "-m",
                "racebench.cli",
                "serve",
                "--strategy",
                spec.strategy,
                "--port",
                str(port),
                "--workers",
                str(spec.workers),
                "--database-url",
                spec.database_url,
            ]
            log = stack.enter_context(
                open(spec.log_path, "wb") if spec.log_path else open(os.devnull, "wb")  # noqa: SIM115
            )
            process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            started.append((spec, process, f"http://127.0.0.1:{port}"))
        services = []
        for spec, process, base_url in started:
            _wait_healthy(process, base_url, spec.strategy, spec.log_path)
            services.append(RunningService(base_url, spec.strategy, spec.workers, process.pid))
        yield services


def _wait_healthy(
    process: subprocess.Popen[bytes], base_url: str, strategy: str, log_path: Path | None
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    # A class of one's own (package.module:Class) answers with its class's name.
    reported = import_strategy(strategy).name if is_custom(strategy) else strategy
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                hint = f"; see {log_path}" if log_path else ""
                raise ServiceStartError(
                    f"racebench serve --strategy {strategy} exited with {process.returncode}{hint}"
                )
            try:
                response = client.get(f"{base_url}/healthz")
                if response.status_code == 200 and response.json().get("strategy") == reported:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(HEALTH_POLL_INTERVAL_S)
    raise ServiceStartError(f"{base_url} was not healthy after {STARTUP_TIMEOUT_S:.0f} s")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the child's whole process group, then SIGKILL it if it lingers."""
    stop_process_groups([process])


def stop_process_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGINT every child's process group at once (they shut down side by side), then SIGKILL
    any that lingers past SHUTDOWN_TIMEOUT_S. A group whose leader has died already is
    signalled too: its uvicorn workers may not have."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
