"""Adding is cheap: a new strategy is one file and one registry line, and so is a new scenario.

The test copies the repository's tracked files to a temporary folder, adds a strategy module and
a scenario module there with one line in each registry (nothing else), and runs the copy's own
`racebench race` on them. The editable install points at this checkout, so the copy is run from
a tree of links shaped like the installed package (as `make typecheck` builds it), put first on
PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOORS = ("harness", "reference_service", "scenarios", "loadtests", "reports")
NEW_STRATEGY = "for_no_key_update"
NEW_SCENARIO = "verify_meets_webhook"
# The command loads FastAPI, SQLAlchemy and the harness, then runs two short cells.
COMMAND_TIMEOUT_S = 120

STRATEGY_MODULE = '''"""`for_no_key_update`: SELECT ... FOR NO KEY UPDATE, the row lock of an UPDATE
that changes no key; it conflicts with itself, so captures queue."""

from __future__ import annotations

from racebench.reference_service.db import Tx
from racebench.reference_service.strategies.base import (
    SELECT_INVOICE,
    SELECT_PAYMENT,
    LockStrategy,
    PaymentRow,
)


class ForNoKeyUpdate(LockStrategy):
    name = "for_no_key_update"
    summary = "SELECT ... FOR NO KEY UPDATE on the payment, then on the invoice"
    statements_per_capture = 5  # as `for_update`

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        return await self._select_payment(tx, SELECT_PAYMENT + " FOR NO KEY UPDATE", payment_id)

    async def read_invoice(self, tx: Tx, invoice_id: int) -> tuple[int, int]:
        return await self._select_invoice(tx, SELECT_INVOICE + " FOR NO KEY UPDATE", invoice_id)


STRATEGY = ForNoKeyUpdate
'''

SCENARIO_MODULE = '''"""verify_meets_webhook: the callback and the webhook read pending, then write.

Expected: `none` is caught; a strategy that holds captures once.
"""

from __future__ import annotations

from racebench.harness.runner import Race
from racebench.harness.schedule import Schedule, rendezvous
from racebench.razorpay import RazorpayEvent
from racebench.scenarios.base import Scenario

BOTH_READ = Schedule.of("both read pending", rendezvous("T1"))


async def script(race: Race) -> None:
    payment = await race.payment()
    await race.together(
        race.verify("client", payment),
        race.webhook("webhook", payment, RazorpayEvent.PAYMENT_CAPTURED),
        schedule=BOTH_READ,
    )


SCENARIO = Scenario("verify_meets_webhook", "callback meets webhook", script, catches_races=True)
'''


def _add_registry_line(init: Path, after: str, name: str) -> None:
    """Insert `"name",` as the last entry of MODULES, right after the line `after`."""
    text = init.read_text()
    line = f'    "{after}",\n'
    assert text.count(line) == 1, f"{init}: no single {line!r}"
    init.write_text(text.replace(line, f'{line}    "{name}",\n'))


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's tracked files, plus the two new modules and their registry lines."""
    root = tmp_path_factory.mktemp("adding")
    source = root / "repo"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True
    ).stdout.split(b"\0")
    for name in filter(None, (t.decode() for t in tracked)):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    (source / "reference_service/strategies" / f"{NEW_STRATEGY}.py").write_text(STRATEGY_MODULE)
    _add_registry_line(
        source / "reference_service/strategies/__init__.py", "app_lock", NEW_STRATEGY
    )
    (source / "scenarios" / f"{NEW_SCENARIO}.py").write_text(SCENARIO_MODULE)
    _add_registry_line(source / "scenarios/__init__.py", "invoice_fan_in", NEW_SCENARIO)
    # The installed package's shape: racebench/ holds the commands and the floors.
    package = root / "links" / "racebench"
    package.mkdir(parents=True)
    for module in (source / "racebench").glob("*.py"):
        (package / module.name).symlink_to(module)
    for floor in FLOORS:
        (package / floor).symlink_to(source / floor, target_is_directory=True)
    return root


def _racebench(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "links"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "racebench.cli", *args],
        cwd=copy / "links",  # the current folder comes first on sys.path: not this checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def test_a_new_strategy_and_scenario_run_in_the_race_matrix(copy: Path, database_url: str) -> None:
    out = copy / "run"
    answer = _racebench(
        copy,
        "race",
        "--strategy",
        f"none,{NEW_STRATEGY}",
        "--scenario",
        NEW_SCENARIO,
        "--mode",
        "in_process",
        "--out",
        str(out),
        "--database-url",
        database_url,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    cells = {
        c["strategy"]: (c["expected"], c["verdict"])
        for c in json.loads((out / "results.json").read_text())["race"]
        if c["scenario"] == NEW_SCENARIO
    }
    # Neither name exists in this checkout: the copy's package ran. The scenario catches an
    # unguarded capture; the new strategy holds (holds(): SAFE by default).
    assert cells == {"none": ("race", "race_detected"), NEW_STRATEGY: ("safe", "safe")}


def test_the_new_names_appear_in_race_help(copy: Path) -> None:
    answer = _racebench(copy, "race", "--help")
    assert answer.returncode == 0, answer.stderr
    assert "split_invoice" in answer.stdout
    assert NEW_STRATEGY in answer.stdout
    assert NEW_SCENARIO in answer.stdout
