"""racebench hints in the report: the table, the gate, hints.md with each hint's statements in
```sql blocks, and report.html with the SQL highlighted (keywords bold, the hint's names marked)
and everything from results.json escaped. Results are built here: no service, no database."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from racebench.cli import app
from racebench.reports.hints import HINTS_FILE, highlight_sql
from racebench.results import (
    DraftInvariant,
    Hint,
    HintConfirmation,
    HintEvidence,
    HintsResult,
    Results,
)
from tests.reports.synthetic import event

READ = (
    "SELECT shop_invoice.id, shop_invoice.paid_paise FROM shop_invoice "
    "WHERE shop_invoice.id = $1::BIGINT AND note <> '<script>alert(1)</script>'"
)
WRITE = "UPDATE shop_invoice SET paid_paise=$1::BIGINT WHERE shop_invoice.id = $2::BIGINT"
SCHEDULE = "schedules/hint-lost_update-split_invoice-buggy-238b58586e6f.json"
SAID = (
    "1 schedules with at most 2 preemptions explored, fewest preemptions first, stopped at "
    "the first violation: 1 violation; RESULT: INVOICE_DRIFT x1 (invoice_id=1)"
)
DRIFT = (
    "SELECT t.id FROM shop_invoice t JOIN shop_receipt r ON r.invoice_id = t.id\n"
    "GROUP BY t.id, t.paid_paise HAVING t.paid_paise <> sum(r.amount_paise)"
)

CONFIRMED = HintConfirmation(
    verdict="confirmed",
    scenario="split_invoice",
    method="explore",
    said=SAID,
    schedules=1,
    seconds=0.7,
    violations={"INVOICE_DRIFT": 1},
    schedule_file=SCHEDULE,
    timeline=[
        event(0.0, "first", "sends POST /checkout/razorpay/callback", "send"),
        event(1.0, "second", "sends webhook payment.captured", "send"),
        event(2.0, "first", "SELECT shop_invoice.paid_paise ... -> SELECT 1", "arrive"),
        event(3.0, "second", "SELECT shop_invoice.paid_paise ... -> SELECT 1", "arrive"),
        event(4.0, "first", "UPDATE shop_invoice ... -> UPDATE 1", "arrive"),
        event(5.0, "second", "UPDATE shop_invoice ... -> UPDATE 1", "arrive"),
        event(9.0, "-", "RESULT: INVOICE_DRIFT x1 (invoice_id=1)", "note"),
    ],
)

HINT = Hint(
    rank=1,
    kind="lost_update",
    title="read, then write what was read (a lost update)",
    table="shop_invoice",
    tables=["shop_invoice"],
    columns=["paid_paise"],
    requests=["verify", "webhook payment.captured"],
    evidence=[
        HintEvidence(role="read", sql=READ, request="verify", transaction=0),
        HintEvidence(role="write", sql=WRITE, request="verify", transaction=0),
    ],
    why="shop_invoice.paid_paise is read without a row lock, then written from what was read",
    fix="make the write conditional (UPDATE shop_invoice ... WHERE paid_paise = <what was read>)",
    confirmation=CONFIRMED,
)


def _entry(variant: str, *, passed: bool, hints: list[Hint]) -> HintsResult:
    return HintsResult(
        target="shop",
        variant=variant,
        source="proxy",
        transactions=5,
        statements=26,
        unparsed=0,
        hints=hints,
        barrier_tables=["shop_invoice", "shop_receipt"],
        invariants=[
            DraftInvariant(
                code="SHOP_INVOICE_PAID_PAISE_DRIFT",
                name="shop_invoice.paid_paise is not the sum of its receipts",
                sql=DRIFT,
                why="the capture updates shop_invoice.paid_paise",
            )
        ],
        expected="race" if hints else "safe",
        passed=passed,
        seconds=2.5,
    )


def _report(run_dir: Path, *entries: HintsResult) -> tuple[int, str]:
    Results(run_id="r", hints=list(entries)).write(run_dir)
    result = CliRunner().invoke(app, ["report", str(run_dir)], env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


def test_hints_md_holds_the_table_and_each_statement_fenced(tmp_path: Path) -> None:
    code, output = _report(
        tmp_path,
        _entry("buggy", passed=True, hints=[HINT]),
        _entry("fixed", passed=True, hints=[]),
    )
    assert code == 0, output
    assert "Hints, ranked, and what forcing them showed" in output
    assert "ok hints shop x buggy" in output and "ok hints shop x fixed" in output
    markdown = (tmp_path / HINTS_FILE).read_text()
    assert "| shop x buggy | 1 | read, then write what was read (a lost update)" in markdown
    assert "| shop x fixed | - | no hint" in markdown
    assert f"```sql\n{READ}\n```" in markdown
    assert f"```sql\n{WRITE}\n```" in markdown
    assert f"```sql\n{DRIFT}\n```" in markdown  # the draft invariant
    assert "barrier_tables = ['shop_invoice', 'shop_receipt']" in markdown
    assert f"racebench explore --replay {SCHEDULE}" in markdown
    assert "\\<what was read\\>" in markdown  # prose, not an HTML tag


def test_report_html_highlights_the_sql_and_escapes_it(tmp_path: Path) -> None:
    code, output = _report(tmp_path, _entry("buggy", passed=True, hints=[HINT]))
    assert code == 0, output
    html = (tmp_path / "report.html").read_text()
    section = html[html.index("<h2>Hints: the service&#x27;s own SQL") :]
    assert "<mark>shop_invoice</mark>.<mark>paid_paise</mark>" in section
    assert "<b>SELECT</b>" in section and "<b>WHERE</b>" in section and "<b>UPDATE</b>" in section
    assert "<script>" not in html
    assert "&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;" in section
    assert "&lt;what was read&gt;" in section
    assert '<p class="role"><b>read</b>' in section and '<pre class="sql">' in section
    assert "SHOP_INVOICE_PAID_PAISE_DRIFT" in section
    assert "data:image/png;base64," in section  # the confirmed hint's schedule, as swimlanes
    assert f"racebench explore --replay {SCHEDULE}" in section


def test_a_variant_not_as_expected_fails_the_gate(tmp_path: Path) -> None:
    code, output = _report(
        tmp_path,
        _entry("buggy", passed=True, hints=[HINT]),
        _entry("fixed", passed=False, hints=[]),
    )
    assert code == 1
    assert "FAIL hints shop x fixed" in output
    assert (tmp_path / "report.html").exists()


def test_keywords_are_the_scanners_and_only_names_are_marked() -> None:
    sql = "SELECT \"Shop_Invoice\".version, 'shop_invoice' FROM shop_invoice -- shop_invoice"
    html = highlight_sql(sql, ["shop_invoice", "version"])
    # A quoted name keeps its case in PostgreSQL: "Shop_Invoice" is another table.
    assert html.startswith("<b>SELECT</b> &quot;Shop_Invoice&quot;.")
    quoted = highlight_sql(sql, ["Shop_Invoice"])
    assert quoted.startswith("<b>SELECT</b> <mark>&quot;Shop_Invoice&quot;</mark>.")
    assert "<mark>shop_invoice</mark>" not in quoted
    assert ".<mark>version</mark>" in html  # an unreserved keyword used as a column
    assert "&#x27;shop_invoice&#x27;" in html  # a string literal is not a name
    assert "<b>FROM</b> <mark>shop_invoice</mark> -- shop_invoice" in html  # nor a comment
    assert highlight_sql("SELECT '<b>") == "SELECT &#x27;&lt;b&gt;"  # unscannable: plain
