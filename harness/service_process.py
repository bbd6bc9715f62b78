"""`racebench serve` as a child process: started, awaited until healthy, always stopped.

Used by the race harness's http mode and by the benchmark runner.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    port = port or free_port()
    env = {**os.environ, "DATABASE_URL": database_url, **(extra_env or {})}
    command = [
        sys.executable,
        "-m",
        "racebench.cli",
        "serve",
        "--strategy",
        strategy,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--database-url",
        database_url,
    ]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base_url, strategy, log_path)
        yield RunningService(base_url, strategy, workers, process.pid)
    finally:
        stop_process_group(process)
        if log_path:
            log.close()  # type: ignore[union-attr]


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
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
