"""docs/targets.md's section on what racebench sends a target is generated from the scenarios'
own scripts (`racebench target sends`): it must be today's."""

from __future__ import annotations

from pathlib import Path

import pytest

from racebench.harness.target.file import load
from racebench.scenarios.sends import BEGIN, END, markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "targets.md"


async def test_the_docs_say_what_the_scenarios_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACEBENCH_TARGET_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    generated = await markdown(load("reference"))
    assert text[start:end] == generated, (
        "docs/targets.md is stale: put `racebench target sends` between its markers"
    )
    assert "### simultaneous" in generated and "payment.captured" in generated
