"""Services as child processes: started in a process group of their own, awaited until their
health URL answers, always stopped (the whole group), however the caller leaves.

One mechanism for racebench's own service (harness/service_process.py builds its command) and
for a target's (harness/target/service.py renders the target file's [service]).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

# uvicorn with several workers imports the app in each; on a busy 2-core machine that can take
# several seconds, and pgserver-backed runs add a little more.
STARTUP_TIMEOUT_S = 60.0
# Between health probes while a service starts (a probe is a cheap local request).
HEALTH_POLL_INTERVAL_S = 0.1
# One health probe: a local service that is up answers in milliseconds.
HEALTH_PROBE_TIMEOUT_S = 2.0
# A graceful stop lets a server finish in-flight requests; past this we kill the group.
SHUTDOWN_TIMEOUT_S = 15.0
PORT = "{port}"  # in a spec's command, environment or URL: the port it is given


class ServiceStartError(RuntimeError):
    """A service did not start: its command failed, it exited, or it never became healthy."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServiceSpec:
    """A service to start: its command, environment (added to this process's) and base URL,
    in which `{port}` is the port it gets (`port`, else a free one)."""

    name: str  # in messages: "racebench serve --strategy none", "shop"
    argv: tuple[str, ...]
    url: str = f"http://127.0.0.1:{PORT}"
    health: str = "/health"  # GET must answer 2xx once it is up
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int | None = None
    log_path: Path | None = None
    start_timeout_s: float = STARTUP_TIMEOUT_S
    healthy: Callable[[httpx.Response], bool] | None = None  # beyond a 2xx, if given

    def on_port(self, port: int) -> ServiceSpec:
        """This spec with `{port}` filled in everywhere."""

        def fill(text: str) -> str:
            return text.replace(PORT, str(port))

        return replace(
            self,
            argv=tuple(fill(a) for a in self.argv),
            url=fill(self.url),
            env={k: fill(v) for k, v in self.env.items()},
            port=port,
        )


@dataclass(frozen=True)
class RunningService:
    name: str
    base_url: str
    pid: int  # the process group's leader


@contextmanager
def running_services(specs: Sequence[ServiceSpec]) -> Iterator[list[RunningService]]:
    """Start every spec's service at once (they boot side by side); yield once each answers
    its health URL; stop them all on exit, however it comes."""
    with ExitStack() as stack:
        started: list[tuple[ServiceSpec, subprocess.Popen[bytes]]] = []
        stack.callback(lambda: stop_process_groups([process for _, process in started]))
        taken: set[int] = set()
        for spec in specs:
            if spec.port is not None and spec.port in taken:
                raise ValueError(f"two services on port {spec.port}")
            port = spec.port or free_port()
            while port in taken:
                port = free_port()  # picked before the others bound theirs: pick again
            taken.add(port)
            spec = spec.on_port(port)
            log = stack.enter_context(
                open(spec.log_path, "wb") if spec.log_path else open(os.devnull, "wb")  # noqa: SIM115
            )
            try:
                process = subprocess.Popen(
                    spec.argv,
                    cwd=spec.cwd,
                    env={**os.environ, **spec.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise ServiceStartError(
                    f"{spec.name}: {spec.argv[0]!r} did not start: {error}"
                ) from None
            started.append((spec, process))
        services = []
        for spec, process in started:
            wait_healthy(spec, process)
            services.append(RunningService(spec.name, spec.url, process.pid))
        yield services


@contextmanager
def running_service(spec: ServiceSpec) -> Iterator[RunningService]:
    with running_services([spec]) as (service,):
        yield service


def wait_healthy(spec: ServiceSpec, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until GET url + health answers 2xx (and `healthy`), or ServiceStartError: the process
    exited, or start_timeout_s passed (with the last answer or error seen)."""
    url = spec.url + spec.health
    deadline = time.monotonic() + spec.start_timeout_s
    last = "no answer"
    hint = f"; see {spec.log_path}" if spec.log_path else ""
    with httpx.Client(timeout=HEALTH_PROBE_TIMEOUT_S) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise ServiceStartError(
                    f"{spec.name} exited with {process.returncode} before {url} answered{hint}"
                )
            try:
                response = client.get(url)
                if 200 <= response.status_code < 300 and (
                    spec.healthy is None or spec.healthy(response)
                ):
                    return
                last = f"answered {response.status_code}"
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            if time.monotonic() >= deadline:
                raise ServiceStartError(f"{url} is not reachable ({last}){hint}")
            time.sleep(HEALTH_POLL_INTERVAL_S)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the child's whole process group, then SIGKILL it if it lingers."""
    stop_process_groups([process])


def stop_process_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGINT every child's process group at once (they shut down side by side), then SIGKILL
    any that lingers past SHUTDOWN_TIMEOUT_S. A group whose leader has died already is
    signalled too: its workers may not have."""
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
