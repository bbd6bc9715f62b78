"""The latency racebench's proxy adds to one statement, direct and proxied A B A B.

    .venv/bin/python benchmarks/proxy_overhead.py --n 2000 --rounds 10 [--loop asyncio|uvloop]

The proxy runs in its own process, as a user runs it (`racebench proxy`, keeping no
transcript; --loop: `serve()` on asyncio's own loop or on uvloop), so it shares neither the
client's event loop nor its GIL.
Each round times `n` statements one after another on one connection straight to the server,
and `n` on one connection through the proxy (which side goes first alternates by round), for
`SELECT 1` and a one-row UPDATE, with asyncpg and with psycopg 3 (sync). A round's figure is
the median latency of its `n` statements; the summary is the median over rounds, and the
added latency is the median of the rounds' paired differences (proxied - direct).

Against a server on TCP (DATABASE_URL): an embedded server answers on a Unix socket, which
the direct side would use and the proxied side would not.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from sqlalchemy import make_url

from racebench.harness.database import provision

TABLE = "racebench_proxy_bench"
STATEMENTS = ("SELECT 1", "UPDATE 1 row")

Timed = Callable[[], Awaitable[float]]  # runs one statement, returns its latency in ms


# --loop asyncio|uvloop: the proxy's own process, on that event loop (the `racebench proxy`
# command picks its loop itself).
SERVE = """
import asyncio, sys
from racebench.harness.explore.proxy import parse_address, serve
def started(proxy):
    print(f"racebench proxy: listening on postgresql://127.0.0.1:{proxy.port}", flush=True)
factory = None
if sys.argv[1] == "uvloop":
    import uvloop
    factory = uvloop.new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    done = runner.run(serve(("127.0.0.1", 0), parse_address(sys.argv[2]), started))
print(f"racebench proxy: {done.connection_count} connections, {done.statement_count} statements")
"""


def start_proxy(database_url: str, loop: str) -> tuple[subprocess.Popen[str], str]:
    """The proxy on a free port; (its process, the database URL through it)."""
    url = make_url(database_url)
    upstream = f"{url.host or url.query.get('host')}:{url.port or 5432}"
    if loop == "command":
        argv = [sys.executable, "-m", "racebench", "proxy", "--listen", "127.0.0.1:0"]
        argv += ["--upstream", upstream]
    else:
        argv = [sys.executable, "-c", SERVE, loop, upstream]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()  # racebench proxy: listening on postgresql://HOST:PORT ...
    listening = make_url(line.split()[4])
    proxied = url.set(host=listening.host, port=listening.port, query={})
    return process, proxied.render_as_string(hide_password=False)


async def asyncpg_side(url: str) -> tuple[dict[str, Timed], Callable[[], Awaitable[None]]]:
    conn = await asyncpg.connect(url)

    async def select() -> float:
        start = time.perf_counter()
        await conn.fetchval("SELECT 1")
        return (time.perf_counter() - start) * 1000

    async def update() -> float:
        start = time.perf_counter()
        await conn.execute(f"UPDATE {TABLE} SET v = v + 1 WHERE id = $1", 1)
        return (time.perf_counter() - start) * 1000

    return {"SELECT 1": select, "UPDATE 1 row": update}, conn.close


async def psycopg_side(url: str) -> tuple[dict[str, Timed], Callable[[], Awaitable[None]]]:
    """psycopg's sync connection (the client spends no time in an event loop); a statement
    without parameters goes as a simple Query, the UPDATE extended (prepared after 5 runs)."""
    conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
    cur = conn.cursor()

    async def select() -> float:
        start = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchone()
        return (time.perf_counter() - start) * 1000

    async def update() -> float:
        start = time.perf_counter()
        cur.execute(f"UPDATE {TABLE} SET v = v + 1 WHERE id = %s", (1,))
        return (time.perf_counter() - start) * 1000

    async def close() -> None:
        conn.close()

    return {"SELECT 1": select, "UPDATE 1 row": update}, close


async def median_ms(run: Timed, n: int) -> float:
    return statistics.median([await run() for _ in range(n)])


async def main(database_url: str, n: int, rounds: int, warmup: int, loop: str) -> None:
    setup = await asyncpg.connect(database_url)
    await setup.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v bigint NOT NULL)")
    await setup.execute(f"INSERT INTO {TABLE} VALUES (1, 0)")
    await setup.close()
    process, proxied_url = start_proxy(database_url, loop)
    try:
        for driver, side in (("asyncpg", asyncpg_side), ("psycopg", psycopg_side)):
            direct, close_direct = await side(database_url)
            proxied, close_proxied = await side(proxied_url)
            sides = {"direct": direct, "proxied": proxied}
            medians: dict[tuple[str, str], list[float]] = {
                (stmt, where): [] for stmt in STATEMENTS for where in sides
            }
            for stmt in STATEMENTS:
                for where in sides:
                    await median_ms(sides[where][stmt], warmup)
            for r in range(rounds):
                order = ["direct", "proxied"] if r % 2 == 0 else ["proxied", "direct"]
                for stmt in STATEMENTS:
                    for where in order:
                        medians[stmt, where].append(await median_ms(sides[where][stmt], n))
            await close_direct()
            await close_proxied()
            for stmt in STATEMENTS:
                a, b = medians[stmt, "direct"], medians[stmt, "proxied"]
                added = [p - d for d, p in zip(a, b, strict=True)]
                print(
                    f"{driver:8} {stmt:13} direct {statistics.median(a):.3f} ms,"
                    f" proxied {statistics.median(b):.3f} ms,"
                    f" added {statistics.median(added):+.3f} ms"
                    f" (rounds: {min(added):+.3f} .. {max(added):+.3f})"
                )
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
        print(out.strip().splitlines()[-1] if out.strip() else "(the proxy printed nothing)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="statements per side per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--loop",
        choices=("command", "asyncio", "uvloop"),
        default="command",
        help="the proxy's process: `racebench proxy`, or serve() on this event loop",
    )
    args = parser.parse_args()
    print(
        f"{args.n} statements a side, median of {args.rounds} rounds (A B A B), proxy: {args.loop}"
    )
    with provision(args.database_url) as db:
        asyncio.run(main(db.url, args.n, args.rounds, args.warmup, args.loop))
