"""A target file: read, checked, and every mistake named by its field (exit 2 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from racebench.cli import app
from racebench.harness.target.file import (
    TargetFileError,
    load,
    render_json,
    render_sql,
)
from racebench.harness.target.matrix import plan_target
from racebench.scenarios import SCENARIOS

GOOD = """
name = "shop"
[service]
url = "http://127.0.0.1:8100"
health = "/health"
[database]
url = "${SHOP_TEST_DB:-postgresql://u@127.0.0.1/shop}"
barrier_tables = ["shop_payment"]
[razorpay]
key_secret = "k"
webhook_secret = "w"
[payment]
sql = '''INSERT INTO shop_payment (ref) VALUES ('{run}-{n}')
         RETURNING id AS payment_id, ref AS order_id'''
[verify]
path = "/callback"
json = { order = "{order_id}", id = "{payment_id}", sig = "{signature}" }
[webhook]
path = "/hooks"
[[invariants]]
code = "DOUBLE_CAPTURE"
sql = "SELECT 1 WHERE false"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


def test_a_good_file_is_read(tmp_path: Path) -> None:
    spec = load(write(tmp_path, GOOD))
    assert spec.name == "shop"
    assert spec.database_url == "postgresql://u@127.0.0.1/shop"
    assert spec.barrier_tables == ("shop_payment",)
    assert not spec.can_share_invoice()
    assert spec.verify.method == "POST"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('url = "http://127.0.0.1:8100"', 'url = "127.0.0.1:8100"'), "[service].url"),
        (('barrier_tables = ["shop_payment"]', "barrier_tables = []"), "barrier_tables"),
        (('path = "/callback"', 'path = "callback"'), "[verify].path"),
        (('key_secret = "k"', ""), "[razorpay].key_secret"),
        (('code = "DOUBLE_CAPTURE"', 'code = "double"'), "[[invariants]] #1.code"),
        (('sig = "{signature}"', 'sig = "{signature"'), "[verify].json.sig"),
        (('name = "shop"', 'name = "shop"\nsevice = 1'), "sevice"),
        (
            ("${SHOP_TEST_DB:-postgresql://u@127.0.0.1/shop}", "${SHOP_TEST_DB_UNSET}"),
            "[database].url",
        ),
    ],
)
def test_a_mistake_names_its_field(tmp_path: Path, change: tuple[str, str], field: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(TargetFileError) as caught:
        load(write(tmp_path, GOOD.replace(old, new)))
    assert field in str(caught.value)


def test_the_cli_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('path = "/hooks"', "path = 3"))
    result = CliRunner().invoke(app, ["race", "--target", str(path)])
    assert result.exit_code == 2
    assert "[webhook].path" in result.output
    result = CliRunner().invoke(app, ["target", "check", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_templates_keep_types_in_json_and_null_in_sql() -> None:
    values = {"payment_id": 7, "invoice_id": None, "order_id": "order_x"}
    assert render_json(
        {"id": "{payment_id}", "inv": "{invoice_id}", "o": "o-{order_id}"}, values
    ) == {
        "id": 7,
        "inv": None,
        "o": "o-order_x",
    }
    assert render_sql("VALUES ({payment_id}, {invoice_id})", values) == "VALUES (7, NULL)"


def test_the_reference_service_ships_as_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACEBENCH_TARGET_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    spec = load("reference")
    assert spec.takes_variant and spec.can_share_invoice()
    assert "DOUBLE_CAPTURE" in {i.code for i in spec.invariants}


def test_white_box_options_are_refused_with_a_target() -> None:
    result = CliRunner().invoke(app, ["race", "--target", "reference", "--mode", "in_process"])
    assert result.exit_code == 2
    assert "not with --target" in result.output


VARIANTS = """
[variants]
bad = { caught_by = "races", summary = "read, then write" }
good = { env = { MODE = "locked" } }
faulty = { caught_by = ["retry_after_failed_capture"] }
"""


def test_variants_say_what_each_build_must_show(tmp_path: Path) -> None:
    spec = load(write(tmp_path, GOOD + VARIANTS))
    bad, good, faulty = (spec.variants[n] for n in ("bad", "good", "faulty"))
    assert bad.expected("simultaneous", races=True) == "race"
    assert bad.expected("client_first", races=False) == "safe"
    assert good.env == {"MODE": "locked"} and not good.canary
    assert good.expected("simultaneous", races=True) == "safe"
    assert faulty.expected("retry_after_failed_capture", races=False) == "race"
    assert faulty.expected("simultaneous", races=True) == "safe"
    plan = plan_target(SCENARIOS, spec, "simultaneous,client_first", "bad,good")
    assert {(c.scenario.name, c.strategy): c.expected for c in plan.cells} == {
        ("simultaneous", "bad"): "race",
        ("simultaneous", "good"): "safe",
        ("client_first", "bad"): "safe",
        ("client_first", "good"): "safe",
    }
    # --canary: every build asked must be caught by every scenario named.
    plan = plan_target(SCENARIOS, spec, "simultaneous", "good", canary=True)
    assert [c.expected for c in plan.cells] == ["race"]


def test_a_variant_caught_by_an_unknown_scenario_is_named(tmp_path: Path) -> None:
    spec = load(write(tmp_path, GOOD + VARIANTS.replace("retry_after_failed_capture", "retri")))
    with pytest.raises(
        ValueError, match=r"\[variants\]\.faulty\.caught_by: unknown scenario retri"
    ):
        plan_target(SCENARIOS, spec, "simultaneous", "faulty")
    with pytest.raises(TargetFileError, match=r"\[variants\]\.bad\.caught_by"):
        load(write(tmp_path, GOOD + VARIANTS.replace('"races"', '"all"')))
    # A target of its own inherits nothing of the reference service's strategies.
    with pytest.raises(ValueError, match="variant of shop"):
        plan_target(SCENARIOS, load(write(tmp_path, GOOD + VARIANTS)), "all", "for_update")


def test_builtin_invariants_and_the_ledger_join_the_files_own(tmp_path: Path) -> None:
    text = GOOD.replace('name = "shop"', 'name = "shop"\nbuiltin_invariants = ["DOUBLE_CAPTURE"]')
    with pytest.raises(TargetFileError, match="DOUBLE_CAPTURE appears twice"):
        load(write(tmp_path, text))
    text = text.replace('code = "DOUBLE_CAPTURE"', 'code = "MY_OWN"')
    text = text.replace(
        "[verify]", 'captured_sql = "SELECT id AS payment_id FROM p WHERE id = ANY($1)"\n[verify]'
    )
    spec = load(write(tmp_path, text))
    assert [i.code for i in spec.invariants] == ["DOUBLE_CAPTURE", "MY_OWN", "ACKNOWLEDGED_LOST"]
    assert spec.invariants[-1].ledger == "captures"
    with pytest.raises(TargetFileError, match="builtin_invariants"):
        load(write(tmp_path, text.replace('["DOUBLE_CAPTURE"]', '["NOT_OURS"]')))


def test_an_owned_database_and_a_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace(
        "${SHOP_TEST_DB:-postgresql://u@127.0.0.1/shop}", "${SHOP_DB:-{database_url}}"
    )
    monkeypatch.delenv("SHOP_DB", raising=False)
    assert load(write(tmp_path, text)).owns_database
    monkeypatch.setenv("SHOP_DB", "postgresql://u@h/db")
    spec = load(write(tmp_path, text))
    assert not spec.owns_database and spec.database_url == "postgresql://u@h/db"

    (tmp_path / "svc").mkdir()
    with_cwd = GOOD.replace('health = "/health"', 'health = "/health"\ncwd = "svc"')
    assert load(write(tmp_path, with_cwd)).service.cwd == tmp_path / "svc"
    with pytest.raises(TargetFileError, match=r"\[service\]\.cwd"):
        load(write(tmp_path, with_cwd.replace('"svc"', '"nowhere"')))
