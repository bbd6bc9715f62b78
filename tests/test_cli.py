"""The command line's conventions: -h, --version, every command's names and exit codes in its
help (from the registries), plain metavars, and the same help in a terminal and in a log."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import racebench
from racebench.cli import app
from racebench.loadtests.profiles import PROFILE_NAMES
from racebench.reference_service.strategies import STRATEGY_NAMES
from racebench.scenarios import SCENARIO_NAMES

NAMES: dict[str, tuple[str, ...]] = {
    "race": (*SCENARIO_NAMES, *STRATEGY_NAMES),
    "bench": (*STRATEGY_NAMES, *PROFILE_NAMES),
    "serve": STRATEGY_NAMES,
    "report": (),
    "demo": (),
}


def _help(*args: str) -> str:
    done = CliRunner().invoke(app, [*args, "-h"])
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("command", sorted(NAMES))
def test_every_command_lists_its_names_and_exit_codes(command: str) -> None:
    text = " ".join(_help(command).split())
    for name in NAMES[command]:
        assert name in text
    assert "Exit codes: 0 " in text
    assert "; 1 " in text or "; 2 " in text
    assert "<bool>" not in text and "<str>" not in text and "<int" not in text
    assert "--help" in text and "-h," in text


def test_race_help_names_what_each_exit_code_means() -> None:
    text = " ".join(_help("race").split())
    for code in ("0 every cell as expected", "1 a cell failed", "2 bad input"):
        assert code in text


def test_top_level_help_and_version() -> None:
    text = _help()
    assert all(command in text for command in NAMES)
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0
    assert done.output.strip() == f"racebench {racebench.__version__}"


def test_help_does_not_wrap_at_80_columns_when_not_a_terminal() -> None:
    """A log (no terminal) gets the same 100-column help, not click's 80-column fallback."""
    done = subprocess.run(
        [sys.executable, "-m", "racebench.cli", "bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    widths = [len(line) for line in done.stdout.splitlines()]
    assert max(widths) > 80
    assert max(widths) <= 100
