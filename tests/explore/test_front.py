"""`racebench proxy --upstream-url URL -- COMMAND`: the command's database traffic goes through
the proxy (or, with RACEBENCH_PROXY_BYPASS=1, straight), its exit code comes back."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from racebench.harness.database import parse_url

CHILD = """
import asyncio, os, sys, asyncpg
async def main():
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    print(os.environ["DATABASE_URL"], await conn.fetchval("SELECT 41 + 1"), flush=True)
    await conn.close()
asyncio.run(main())
sys.exit(3)
"""


@pytest.mark.parametrize("bypass", [False, True])
async def test_a_command_behind_the_proxy(database_url: str, bypass: bool) -> None:
    env = {**os.environ}
    env.pop("RACEBENCH_PROXY_BYPASS", None)
    if bypass:
        env["RACEBENCH_PROXY_BYPASS"] = "1"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "racebench.cli", "proxy", "--upstream-url", database_url,
        "--", sys.executable, "-c", CHILD,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 3  # the command's own exit code
    url, answer = out.decode().split()
    assert answer == "42"
    given, upstream = parse_url(url), parse_url(database_url)
    assert given.database == upstream.database
    assert (given.port == upstream.port) is bypass  # through the proxy: its own port
