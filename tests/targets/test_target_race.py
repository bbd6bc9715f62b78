"""Target mode end to end: the reference service as a target over real HTTP (race points off,
two workers), forced by the barrier alone; an unforced run is an error, never safe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.harness.database import connect, parse_url
from racebench.harness.processes import free_port
from racebench.harness.target import file as target_file
from racebench.harness.target.matrix import race_target_scenario
from racebench.pytest_plugin import TargetRacer
from racebench.scenarios import SCENARIOS
from racebench.scenarios.simultaneous import on_target as simultaneous


@pytest.fixture(autouse=True)
def reference_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACEBENCH_TARGET_DATABASE_URL", database_url)


@pytest.mark.parametrize(("strategy", "caught"), [("none", 3), ("for_update", 0)])
async def test_the_barrier_forces_the_race_on_an_unmodified_service(
    racebench_target: TargetRacer, strategy: str, caught: int
) -> None:
    run = await racebench_target("reference", "simultaneous", repeat=3, variant=strategy)
    assert run.caught == caught, run.message()
    if caught:
        assert all("DOUBLE_CAPTURE" in o.violations for o in run.outcomes)
        held = [e for o in run.outcomes for e in o.timeline if e.kind == "lock_wait"]
        assert held, "the timeline shows the lock waits behind the barrier"


async def test_a_barrier_that_holds_nobody_is_an_error(database_url: str) -> None:
    conn: asyncpg.Connection = await connect(parse_url(database_url))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS never_written (id int)")
    finally:
        await conn.close()
    spec = dataclasses.replace(target_file.load("reference"), barrier_tables=("never_written",))
    [outcome] = await race_target_scenario(spec, simultaneous, variant="none")
    assert any("forced nothing" in e for e in outcome.errors), outcome.errors


def test_split_invoice_needs_a_shared_invoice() -> None:
    spec = target_file.load("reference")
    payment = dataclasses.replace(spec.payment, invoice_sql=None, shares_invoice=False)
    reason = SCENARIOS["split_invoice"].on_target(dataclasses.replace(spec, payment=payment))
    assert isinstance(reason, str) and "invoice" in reason
    assert isinstance(SCENARIOS["interleaved"].on_target(spec), str)


def test_a_service_that_is_down_exits_2_with_its_url(tmp_path: Path) -> None:
    text = target_file.REFERENCE_TARGET.read_text()
    port = free_port()
    text = text.replace('url = "http://127.0.0.1:{port}"', f'url = "http://127.0.0.1:{port}"')
    # A service racebench only reaches: no command, and no start timeout of the file's own (its
    # health URL then gets REACHED_WAIT_S, not the minute a starting service is given).
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("command =", "start_timeout_s"))
    )
    path = tmp_path / "down.toml"
    path.write_text(text.replace("{variant}", "none"))
    for args in (["target", "check", str(path)], ["race", "--target", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"http://127.0.0.1:{port}/healthz" in result.output


def test_target_check_walks_one_payment() -> None:
    result = CliRunner().invoke(app, ["target", "check", "reference"])
    assert result.exit_code == 0, result.output
    for step in ("barrier", "payment", "verify", "webhook"):
        assert f"ok   {step}" in result.output


CRASHES = """
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):  # the service dies on its first request, as an unhandled error would
        os._exit(3)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


async def test_a_service_that_exits_is_named_with_its_log(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "crashes.py").write_text(CRASHES)
    text = (
        'name = "crashes"\n'
        '[service]\nurl = "http://127.0.0.1:{port}"\ncommand = "{python} crashes.py {port}"\n'
        '[database]\nurl = "{database_url}"\nbarrier_tables = ["nothing"]\n'
        '[razorpay]\nkey_secret = "k"\nwebhook_secret = "w"\n'
        "[payment]\nsql = \"SELECT {n} AS payment_id, 'order_{n}' AS order_id\"\n"
        '[verify]\nmethod = "POST"\npath = "/verify"\njson = { order = "{order_id}" }\n'
        '[webhook]\npath = "/hook"\n'
        '[[invariants]]\ncode = "NONE"\nsql = "SELECT 1 WHERE false AND $1::bigint[] IS NULL"\n'
    )
    path = tmp_path / "crashes.toml"
    path.write_text(text)
    spec = target_file.load(path)
    script = SCENARIOS["client_first"].on_target(spec)
    assert not isinstance(script, str)
    [outcome] = await race_target_scenario(
        spec, script, use_barrier=False, database_url=database_url
    )
    log = tmp_path / ".racebench-crashes.log"
    assert any(f"has exited: its output is in {log}" in e for e in outcome.errors), outcome.errors
