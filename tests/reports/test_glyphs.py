"""Glyphs that render everywhere: no emoji in report.html, table.md, matrix.md, the terminal or
the charts, and (with headless Chromium, as a reader would open the page) no character that no
installed font can draw, which a browser shows as an empty box.

The Chromium test needs the Debian package `chromium`. Without it the test is skipped locally
and fails in CI (`CI` set, as .ci/run does, which installs the package)."""

from __future__ import annotations

import html
import io
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from racebench.reports.build import HTML_FILE, MATRIX_FILE, TABLE_FILE, run_report
from tests.reports.synthetic import write_run

# Where emoji live: the pictographic planes, misc symbols and dingbats (where ✅ ❌ ⚠ are),
# and the joiners and selectors that turn a plain character into an emoji (⚠ + U+FE0F = ⚠️).
EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),
    (0x2600, 0x27BF),
    (0x2B00, 0x2BFF),
    (0x2300, 0x23FF),
    (0xFE00, 0xFE0F),
    (0x200D, 0x200D),
    (0xE0020, 0xE007F),
)
# A page of a few hundred KB loads in well under a second; this is for a machine under load.
CHROMIUM_TIMEOUT_S = 120
CHROMIUM_PATHS = ("chromium", "/usr/bin/chromium", "chromium-browser")


def emoji_in(text: str) -> list[str]:
    """Each emoji codepoint in `text`, as U+XXXX with the character."""
    return [
        f"U+{ord(c):04X} {c!r}"
        for c in sorted(set(text))
        if any(low <= ord(c) <= high for low, high in EMOJI_RANGES)
    ]


def test_the_emoji_check_sees_the_old_glyphs() -> None:
    assert len(emoji_in("⚠ HIGH ✅ NONE ❌ ⚠️ 0 ✓ 🔒")) == 6  # each codepoint once
    assert emoji_in("HIGH: INR 1,234.00 at risk; — … ±") == []


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A full synthetic run (race and bench, violations included), reported; the terminal's
    text beside it."""
    run_dir = write_run(tmp_path_factory.mktemp("glyphs") / "run")
    out = io.StringIO()
    with warnings.catch_warnings():
        # matplotlib draws an empty box for a character its font lacks, and says so.
        warnings.filterwarnings("error", message=".*[Gg]lyph.*missing")
        run_report(run_dir, announce=False, console=Console(file=out, width=200))
    return run_dir, out.getvalue()


def test_no_emoji_in_the_report_files_or_the_terminal(reported: tuple[Path, str]) -> None:
    run_dir, terminal = reported
    for name in (TABLE_FILE, MATRIX_FILE, HTML_FILE):
        assert emoji_in((run_dir / name).read_text(encoding="utf-8")) == [], name
    assert emoji_in(terminal) == []


def _chromium() -> str:
    for name in CHROMIUM_PATHS:
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (Debian package `chromium`)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}, and CI must run this test (.ci/run installs it)")
    pytest.skip(f"{reason}; CI installs it and runs this test")


def _uncovered(characters: set[str]) -> list[str]:
    """The characters no installed font has (fontconfig, which Chromium uses on Linux)."""
    fc_list = shutil.which("fc-list")
    assert fc_list is not None, "fontconfig's fc-list is missing (chromium depends on it)"
    missing = []
    for c in sorted(characters):
        fonts = subprocess.run(
            [fc_list, f":charset={ord(c):x}", "family"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if not fonts.strip():
            missing.append(f"U+{ord(c):04X} {c!r}")
    return missing


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="fontconfig is not installed")
def test_the_font_check_sees_a_character_no_font_has() -> None:
    assert _uncovered({"—", "…", "±"}) == []
    assert _uncovered({"\U000f0000"}) == ["U+F0000 '\\U000f0000'"]  # private use: no font


def test_chromium_renders_the_page_without_emoji_or_empty_boxes(
    reported: tuple[Path, str], tmp_path: Path
) -> None:
    chromium = _chromium()
    run_dir, _ = reported
    page = (run_dir / HTML_FILE).resolve()
    rendered = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=False,
    )
    dom = rendered.stdout
    assert "<h1>racebench report" in dom, (rendered.returncode, rendered.stderr[-2000:])
    text = html.unescape(re.sub(r"<[^>]*>", " ", re.sub(r'src="data:[^"]*"', "", dom)))
    assert "Race Condition Risk" in text
    assert emoji_in(text) == []
    assert _uncovered({c for c in text if ord(c) > 0x7F}) == []
