"""A command run behind the proxy: `racebench proxy --upstream-url URL -- COMMAND ...`.

The proxy listens on a free port; the command is started with DATABASE_URL (and
RACEBENCH_PROXY_URL) set to URL pointed at the proxy, and runs until it exits or is stopped
(SIGINT and SIGTERM are passed on to it); then the proxy stops. With RACEBENCH_PROXY_BYPASS=1
the command gets URL itself and no proxy runs: the same process tree with and without the
proxy, which is how a bench measures what the proxy costs (benchmarks/proxy_overhead.toml).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence

from racebench.harness.explore.behind import upstream_of
from racebench.harness.explore.proxy import Proxy

BYPASS_ENV = "RACEBENCH_PROXY_BYPASS"
PROXY_URL_ENV = "RACEBENCH_PROXY_URL"
# How long a stopped command may take to exit before it is killed.
STOP_WAIT_S = 20.0


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (uvicorn[standard] brings it), for
    asyncio.Runner: the proxy relays every message of every connection, and adds about half
    the latency on uvloop (benchmarks/proxy_overhead.py)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def run_behind(upstream_url: str, argv: Sequence[str]) -> int:
    """Run `argv` with its database URL through a new proxy (or straight, with the bypass);
    its exit code (negative: the signal that ended it)."""
    if not argv:
        raise ValueError("no command to run behind the proxy (racebench proxy ... -- COMMAND)")
    if os.environ.get(BYPASS_ENV) == "1":
        return await _run(argv, upstream_url)
    host, port = upstream_of(upstream_url)
    async with Proxy(host, port, keep=False) as proxy:
        return await _run(argv, proxy.url_for(upstream_url))


async def _run(argv: Sequence[str], database_url: str) -> int:
    env = {**os.environ, "DATABASE_URL": database_url, PROXY_URL_ENV: database_url}
    child = await asyncio.create_subprocess_exec(*argv, env=env)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, _pass_on, child, signum)
    try:
        return await child.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(child.wait(), STOP_WAIT_S)
            except TimeoutError:
                child.kill()
                await child.wait()


def _pass_on(child: asyncio.subprocess.Process, signum: int) -> None:
    if child.returncode is None:
        child.send_signal(signum)


__all__ = ["BYPASS_ENV", "PROXY_URL_ENV", "fast_loop", "run_behind"]
