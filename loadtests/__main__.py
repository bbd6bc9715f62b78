"""`python -m racebench.loadtests seed|collect`: the steps around a hand-run or distributed Locust.

    python -m racebench.loadtests seed --database-url URL --size 200000  # before: the pool
    locust -f loadtests/locustfile.py --master ...; locust ... --worker ...
    python -m racebench.loadtests collect TALLY_DIR --database-url URL  # after: figures + checks

`racebench bench` does both itself; these are for runs it does not drive (several machines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from racebench.harness.database import run_sync
from racebench.harness.invariants import check
from racebench.loadtests.pool import DEFAULT_AMOUNT, Pool, seed
from racebench.loadtests.tally import merge_tallies, read_tallies

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.command("seed")
def seed_pool(
    database_url: Annotated[str, typer.Option(help="the service's database (tables must exist)")],
    size: Annotated[int, typer.Option(min=1, help="pending payments to insert")],
    first: Annotated[int, typer.Option(min=1, help="first payment id")] = 1,
    amount: Annotated[int, typer.Option(min=1, help="amount of each payment, paise")] = (
        DEFAULT_AMOUNT
    ),
) -> None:
    """Insert a pool of pending payments in bulk; pass the same --pool-* options to Locust."""
    pool = Pool(first, size, amount)
    seed(database_url, pool)
    typer.echo(f"--pool-first {pool.first} --pool-size {pool.size} --pool-amount {pool.amount}")


@app.command()
def collect(
    tally_dir: Annotated[Path, typer.Argument(help="folder holding every tally-<pid>.json")],
    database_url: Annotated[
        str | None, typer.Option(help="also run the invariants on this database")
    ] = None,
) -> None:
    """Merge the tallies of every Locust process (from every machine) and print the figures."""
    tally = merge_tallies(read_tallies(tally_dir))
    figures: dict[str, object] = {
        "processes": tally.processes,
        "requests": tally.requests,
        "busy": tally.busy,
        "failures": tally.failures,
        "duration_s": round(tally.duration_s, 3),
        "throughput_rps": round(tally.throughput_rps, 1),
        "latency_ms": tally.latency.summary().model_dump(),
        "outcomes": dict(tally.outcomes),
        "pool_wrapped": tally.pool_wrapped,
    }
    if database_url:
        result = run_sync(check(database_url, acknowledged_event_ids=tally.acked_event_ids))
        figures["violations"] = result.counts
    typer.echo(json.dumps(figures, indent=2))


if __name__ == "__main__":
    app()
