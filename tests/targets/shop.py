"""examples/shop, and target files made from its own for a test: other invariant codes, other
barrier tables, written where the test wants them (the shop runs from its own folder)."""

from __future__ import annotations

from pathlib import Path

SHOP_FOLDER = Path(__file__).resolve().parents[2] / "examples" / "shop"
SHOP = SHOP_FOLDER / "target.toml"

# The shop's invariants under codes racebench has never heard of.
OWN_CODES = {
    "DUPLICATE_RECEIPT": "DOUBLE_LEDGER",
    "DOUBLE_CAPTURE": "CAPTURE_COUNTER_PAST_ONE",
    "INVOICE_DRIFT": "INVOICE_TOTAL_DRIFT",
    "STATUS_MISMATCH": "RECEIPT_WITHOUT_CAPTURE",
}
BARRIER = 'barrier_tables = ["shop_payment", "shop_invoice"]'
# The shop's webhook log: written in a transaction of its own before the capture reads.
MISPLACED = 'barrier_tables = ["shop_webhook_log"]'


def shop_file(
    folder: Path,
    *,
    codes: dict[str, str] | None = None,
    barrier: str = BARRIER,
    ledger: bool = True,
) -> Path:
    """The shop's target file, changed, in `folder` (its command still runs in the shop's)."""
    text = SHOP.read_text()
    text = text.replace(
        'url = "http://127.0.0.1:{port}"',
        f'url = "http://127.0.0.1:{{port}}"\ncwd = "{SHOP_FOLDER}"',
        1,
    )
    for old, new in (codes or {}).items():
        assert f'code = "{old}"' in text
        text = text.replace(f'code = "{old}"', f'code = "{new}"')
    assert BARRIER in text
    text = text.replace(BARRIER, barrier)
    if not ledger:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("captured_sql"))
    path = folder / "target.toml"
    path.write_text(text)
    return path
