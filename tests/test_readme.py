"""README.md's plugin example is the test the suite runs (tests/harness/test_plugin_example.py),
letter for letter, so the README cannot drift from code that passes. (.ci/user-project runs
the README's copy too, from a wheel, in a project outside the clone.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_plugin_example_is_the_one_the_suite_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use racebench from your project", 1)[1].split("\n## ", 1)[0]
    example = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    suite = (ROOT / "tests/harness/test_plugin_example.py").read_text()
    code = suite.split('"""', 2)[2].replace("from __future__ import annotations\n", "")
    assert example.strip() == code.strip()


# The Markdown a reader of the repository gets: the README, the contracts, the folders' READMEs.
MARKDOWN = ("README.md", "docs/*.md", "loadtests/README.md", "examples/*/README.md")
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|href=\"([^\"]+)\"")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.I)  # https:, mailto:, an anchor
# "the documents" names nothing by itself; a text that uses the phrase must say, in the same
# paragraph, which documents it means (README.md's section on the source).
VAGUE = re.compile(r"\bthe documents\b", re.I)
NAMED = "Where this comes from"


def markdown_files() -> list[Path]:
    return sorted({p for pattern in MARKDOWN for p in ROOT.glob(pattern)})


def test_the_markdown_files_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/contracts.md"} <= names


def test_no_relative_link_leaves_the_repository() -> None:
    outside = []
    for path in markdown_files():
        for match in LINK.finditer(path.read_text()):
            target = (match[1] or match[2]).split("#", 1)[0]
            if not target or EXTERNAL.match(target):
                continue
            resolved = (path.parent / target).resolve()
            where = f"{path.relative_to(ROOT)}: {target}"
            if not resolved.is_relative_to(ROOT):
                outside.append(f"{where} (outside the repository)")
            elif not resolved.exists():
                outside.append(f"{where} (no such file)")
    assert outside == []


def test_the_source_is_named_wherever_it_is_cited() -> None:
    vague = []
    for path in markdown_files():
        for paragraph in re.split(r"\n\s*\n", path.read_text()):
            if VAGUE.search(paragraph) and NAMED not in paragraph:
                vague.append(f"{path.relative_to(ROOT)}: {paragraph.strip()[:80]}")
    assert vague == []


def test_the_readme_says_where_this_comes_from() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {NAMED}\n", 1)[1].split("\n## ", 1)[0]
    for needed in (
        "POST /payments/verify",
        "POST /webhooks/razorpay",
        "SELECT ... FOR UPDATE",
        "+10 ms",
        "+50 ms",
        "-2%",
    ):
        assert needed in section, needed
    assert "](../" not in readme
