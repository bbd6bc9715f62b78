"""racebench hints end to end: real services behind the real proxy, real PostgreSQL.

The reference service: `none` and `app_lock` (across two workers) are hinted and each hint is
confirmed by exploring it; the five safe strategies get no hint. The shop: its buggy builds
(read-then-save, the read skew, the early claim) each have a confirmed hint in their top 3, its
fixed ones none. `racebench target init` on the shop writes a file whose drafted barrier tables
and invariants catch the buggy build and hold on the fixed one. A statement log is read too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.explore import run_replay
from racebench.harness.target.file import load
from racebench.harness.target.matrix import race_target_scenario
from racebench.hints import Confirming, run_hints, run_init
from racebench.results import HintsResult, Results
from racebench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop" / "target.toml"
SAFE = ("for_update", "conditional_update", "optimistic", "advisory", "serializable")


@pytest.fixture(autouse=True)
def shop_makes_its_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)


def entries(folder: Path) -> dict[str, HintsResult]:
    return {e.variant: e for e in Results.read(folder).hints}


def test_reference_hints_none_and_app_lock_and_nothing_else(
    database_url: str, tmp_path: Path
) -> None:
    code = run_hints(target="reference", strategies="all", database_url=database_url, out=tmp_path)
    found = entries(tmp_path)
    assert code == 0, {v: e.passed for v, e in found.items()}
    for unsafe in ("none", "app_lock"):
        top = found[unsafe].hints[0]
        assert (top.kind, top.table, top.rank) == ("lost_update", "payments", 1)
        assert "status" in top.columns and {"verify", "webhook payment.captured"} <= set(
            top.requests
        )
        assert [e.role for e in top.evidence] == ["read", "write"]
        assert found[unsafe].expected == "race" and found[unsafe].passed
    for safe in SAFE:
        assert found[safe].hints == [], [h.title for h in found[safe].hints]
        assert found[safe].expected == "safe" and found[safe].passed
    assert found["none"].barrier_tables[:2] == ["payments", "invoices"]
    # What each transaction touched: for_update reads the payment under its row lock.
    [capture] = [t for t in found["for_update"].sets if t.request == "verify" and t.writes]
    assert "payments" in capture.locked and "status" in capture.reads["payments"]
    assert "status" in capture.writes["payments"]
    made = [t for t in found["none"].sets if t.request == "make a payment"]
    assert made and all("payments" in t.writes for t in made)  # POST /payments, proxied too


def test_reference_hints_are_confirmed_by_exploring_them(database_url: str, tmp_path: Path) -> None:
    code = run_hints(
        target="reference",
        strategies="none,app_lock",
        confirming=Confirming(budget=20),
        database_url=database_url,
        out=tmp_path,
    )
    assert code == 0
    for entry in entries(tmp_path).values():
        top = entry.hints[0].confirmation
        assert top is not None and top.verdict == "confirmed", top
        assert top.scenario == "simultaneous" and "DOUBLE_CAPTURE" in top.violations
        assert top.schedule_file is not None and Path(top.schedule_file).exists()
        assert top.timeline  # the failing schedule, as the SQL ran


def test_shop_buggy_builds_have_a_confirmed_hint_in_their_top_3_and_fixed_ones_none(
    database_url: str, tmp_path: Path
) -> None:
    code = run_hints(
        target=str(SHOP),
        strategies="buggy,fixed,early_claim,reconciled",
        confirming=Confirming(budget=10),
        database_url=database_url,
        out=tmp_path / "a",
    )
    found = entries(tmp_path / "a")
    assert code == 0, {v: e.passed for v, e in found.items()}
    assert found["fixed"].hints == [] and found["reconciled"].hints == []
    buggy = found["buggy"].hints
    assert [h.kind for h in buggy[:2]] == ["lost_update", "lost_update"]
    assert all(h.confirmation and h.confirmation.verdict == "confirmed" for h in buggy[:3])
    [claim] = found["early_claim"].hints
    assert (claim.kind, claim.table) == ("claim_first", "shop_webhook_event")
    assert claim.confirmation is not None and claim.confirmation.method == "race"
    assert claim.confirmation.verdict == "confirmed", claim.confirmation.said
    # The read skew: not a declared canary of the shop (the barrier cannot force it).
    code = run_hints(
        target=str(SHOP),
        strategies="reconcile_skew",
        confirming=Confirming(budget=20),
        canary=True,
        database_url=database_url,
        out=tmp_path / "b",
    )
    [skew] = entries(tmp_path / "b")["reconcile_skew"].hints
    assert code == 0 and skew.kind == "read_skew"
    assert skew.confirmation is not None and skew.confirmation.verdict == "confirmed"
    assert skew.confirmation.violations == {"FALSE_DISPUTE": 1}


def test_target_init_drafts_a_file_that_catches_the_buggy_shop(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "drafted" / "target.toml"
    assert run_init(str(SHOP), variant="fixed", out=out, database_url=database_url) == 0
    spec = load(out)
    assert spec.barrier_tables == ("shop_invoice", "shop_payment", "shop_receipt")
    own = [i.code for i in spec.invariants if i.code != "ACKNOWLEDGED_LOST"]
    assert own == [
        "ONE_SHOP_RECEIPT_PER_PAYMENT",
        "SHOP_INVOICE_PAID_PAISE_DRIFT",
        "SHOP_RECEIPT_NOT_CAPTURED",
    ]
    assert "DUPLICATE_RECEIPT" not in out.read_text()  # none of the file's own invariants
    for name in ("simultaneous", "split_invoice", "capture_vs_failed"):
        script = SCENARIOS[name].on_target(spec)
        assert not isinstance(script, str)
        buggy = asyncio.run(
            race_target_scenario(spec, script, variant="buggy", database_url=database_url)
        )
        fixed = asyncio.run(
            race_target_scenario(spec, script, variant="fixed", database_url=database_url)
        )
        assert [o.caught for o in buggy] == [True], (name, buggy[0].errors)
        assert [o.caught for o in fixed] == [False], (name, fixed[0].violations)


def test_target_init_needs_the_build_to_read(database_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["target", "init", str(SHOP), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--strategy" in result.output


A = "2026-12-07 05:47:04.710 UTC [4242] capture "  # log_line_prefix '%m [%p] %q%a '
B = "2026-12-07 05:47:04.712 UTC [4243] capture "
LOG = (
    "\n".join(
        [
            f"{A}LOG:  statement: BEGIN",
            f"{A}LOG:  execute __asyncpg_stmt_1__: SELECT id, status FROM payments WHERE id = $1",
            f"{A}DETAIL:  parameters: $1 = '7'",
            f"{B}LOG:  statement: BEGIN",
            f"{A}LOG:  execute __asyncpg_stmt_2__: UPDATE payments",
            "\tSET status = 'captured'",
            "\tWHERE id = $1",
            f"{B}LOG:  execute __asyncpg_stmt_3__: SELECT id FROM refunds WHERE payment_id = $1",
            f"{A}LOG:  statement: COMMIT",
            f"{B}LOG:  execute __asyncpg_stmt_4__: INSERT INTO refunds (payment_id) VALUES ($1)",
            f"{B}LOG:  statement: COMMIT",
        ]
    )
    + "\n"
)


def test_a_statement_log_is_read_for_hints(tmp_path: Path) -> None:
    log = tmp_path / "postgresql.log"
    log.write_text(LOG)
    prefix = "%m [%p] %q%a "
    runner = CliRunner()
    args = ["hints", "--log", str(log), "--log-prefix", prefix, "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--sets"])
    assert result.exit_code == 1, result.output  # hints stand: not as expected of a service
    assert "capture #" in result.output and "writes payments(status)" in result.output
    [entry] = Results.read(tmp_path / "r").hints
    assert (entry.source, entry.log_lines, entry.transactions) == ("log", 11, 2)
    assert [h.title for h in entry.hints] == [
        "read, then write what was read (a lost update)",
        "check, then insert (no unique index)",
    ]
    assert entry.hints[0].requests == ["capture"]
    assert "SET status = 'captured'" in entry.hints[0].evidence[1].sql
    bad = runner.invoke(app, ["hints", "--log", str(log), "--log-prefix", "%m "])
    assert bad.exit_code == 2 and "%p" in bad.output
    missing = runner.invoke(app, ["hints", "--log", str(tmp_path / "nope.log")])
    assert missing.exit_code == 2 and "nope.log: No such file" in missing.output
    taken = tmp_path / "a-file"
    taken.write_text("")
    out = runner.invoke(
        app, ["hints", "--log", str(log), "--log-prefix", prefix, "--out", str(taken)]
    )
    assert out.exit_code == 2 and str(taken) in out.output and "nope.log" not in out.output


def test_a_request_that_fails_makes_the_reading_incomplete_never_a_pass(
    database_url: str, tmp_path: Path
) -> None:
    # The shop signs with its own secret; racebench signs with another: verify answers 400.
    text = SHOP.read_text().replace("shop_key_secret}", "not_the_shop_s_secret}")
    text = text.replace(
        'url = "http://127.0.0.1:{port}"',
        f'url = "http://127.0.0.1:{{port}}"\ncwd = "{SHOP.parent}"',
    )
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(text)
    code = run_hints(target=str(wrong), strategies="fixed", database_url=database_url, out=tmp_path)
    [entry] = Results.read(tmp_path).hints
    assert code == 1 and not entry.passed and entry.hints == []
    assert entry.answers["verify"] == 400
    assert entry.problems == ["verify answered 400: its transactions may be missing or cut short"]


def test_a_skeleton_is_hinted_and_forced_with_the_drafted_invariants(
    database_url: str, tmp_path: Path
) -> None:
    # The shop's file without its barrier tables and invariants: what target init starts from.
    text = SHOP.read_text().split("# Each returns the rows that break it", 1)[0]
    text = text.replace('barrier_tables = ["shop_payment", "shop_invoice"]', "")
    text = text.replace(
        'url = "http://127.0.0.1:{port}"',
        f'url = "http://127.0.0.1:{{port}}"\ncwd = "{SHOP.parent}"',
        1,
    )
    skeleton = tmp_path / "skeleton.toml"
    skeleton.write_text(text)
    code = run_hints(
        target=str(skeleton),
        strategies="buggy",
        confirming=Confirming(budget=10),
        database_url=database_url,
        out=tmp_path / "run",
    )
    [entry] = Results.read(tmp_path / "run").hints
    assert code == 0 and entry.barrier_tables == ["shop_invoice", "shop_payment", "shop_receipt"]
    top = entry.hints[0].confirmation
    assert top is not None and top.violations == {"ONE_SHOP_RECEIPT_PER_PAYMENT": 1}
    assert top.schedule_file is not None
    assert run_replay(Path(top.schedule_file), database_url=database_url) == 0  # drafts kept
