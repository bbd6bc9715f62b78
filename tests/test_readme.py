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
