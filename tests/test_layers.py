"""racebench's floors, top to bottom; no import runs up a floor, and no modules import each
other (in a circle of any length).

The test reads every module of the package with ast (nothing is imported), at the path that
pyproject.toml's package-dir maps it to, and draws an arrow for every import of a racebench
module, at any depth of the file (inside functions and TYPE_CHECKING blocks too).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top to bottom. A module may import its own package's modules and anything on a lower floor;
# packages that share a floor are siblings and may not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    (  # the commands: nothing imports them but other commands
        "racebench.cli",
        "racebench.demo",
        "racebench.race",
        "racebench.explore",
        "racebench.hints",
        "racebench.serve",
        "racebench.pytest_plugin",
        "racebench.__main__",
    ),
    ("racebench.reports", "racebench.loadtests"),
    ("racebench.scenarios",),
    ("racebench.harness",),
    ("racebench.reference_service",),
    ("racebench.results", "racebench.progress", "racebench.console", "racebench"),
)


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Each package of the distribution and the folder it is built from (pyproject.toml)."""
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: Mapping[str, str] = config.get("package-dir", {})
    dirs: dict[str, Path] = {}
    for package in config["packages"]:
        parent, _, leaf = package.rpartition(".")
        if package in mapping:
            dirs[package] = root / mapping[package]
        elif parent in dirs:
            dirs[package] = dirs[parent] / leaf
        else:
            dirs[package] = root / package.replace(".", "/")
    return dirs


def modules(dirs: Mapping[str, Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in dirs.items():
        for path in folder.glob("*.py"):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports(name: str, path: Path, known: Mapping[str, object]) -> set[str]:
    """The racebench modules that module `name`, at `path`, imports."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(package_dirs(root))
    return {name: imports(name, path, known) for name, path in known.items()}


def floor_of(module: str) -> tuple[int, str]:
    """(floor, the entry of FLOORS that holds `module`): the longest prefix wins."""
    best: tuple[int, str] | None = None
    for level, entries in enumerate(FLOORS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (
                best is None or len(entry) > len(best[1])
            ):
                best = (level, entry)
    if best is None:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS")
    return best


def upward(arrows: Mapping[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(arrows.items()):
        level, home = floor_of(module)
        for target in sorted(targets):
            target_level, target_home = floor_of(target)
            if target_home == home or target_level > level or (level == target_level == 0):
                continue
            wrong.append(f"{module} -> {target}")
    return wrong


def cycles(arrows: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> Iterator[None]:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in arrows.get(node, ()):
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(arrows):
        if node not in index:
            for _ in visit(node):
                pass
    return found


def test_every_module_is_on_a_floor_and_every_package_is_read() -> None:
    arrows = graph()
    assert "racebench.harness.matrix" in arrows and "racebench.cli" in arrows
    for module in arrows:
        floor_of(module)
    assert sum(len(t) for t in arrows.values()) > 100  # the walk sees the imports


def test_no_import_runs_up_a_floor_or_across_siblings() -> None:
    assert upward(graph()) == []


def test_no_modules_import_each_other() -> None:
    assert cycles(graph()) == []


def reachable(arrows: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in arrows.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


TARGET_MODE = "racebench.harness.target"


def test_target_mode_reaches_nothing_of_the_reference_service() -> None:
    """A target is anything a file describes: target mode imports no module of the reference
    service, not even through another module."""
    arrows = graph()
    modules_of_target = [m for m in arrows if m == TARGET_MODE or m.startswith(TARGET_MODE + ".")]
    assert len(modules_of_target) >= 8  # the subpackage is read
    leaks = {
        module: sorted(t for t in reachable(arrows, module) if "reference_service" in t)
        for module in modules_of_target
    }
    assert {m: t for m, t in leaks.items() if t} == {}


def test_the_reachability_check_sees_a_leak() -> None:
    arrows = {
        f"{TARGET_MODE}.race": {"racebench.harness.gateway"},
        "racebench.harness.gateway": {"racebench.reference_service.config"},
    }
    assert "racebench.reference_service.config" in reachable(arrows, f"{TARGET_MODE}.race")


def test_the_project_imports_only_through_racebench() -> None:
    """A bare `import harness` would work from a checkout and break from a wheel."""
    bare = {"harness", "reference_service", "scenarios", "loadtests", "reports"}
    offenders = []
    for name, path in modules(package_dirs()).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                heads = [node.module]
            elif isinstance(node, ast.Import):
                heads = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{name}: {h}" for h in heads if h.split(".")[0] in bare]
    assert offenders == []


@pytest.mark.parametrize(
    ("arrows", "wrong", "circles"),
    [
        ({"racebench.harness.a": {"racebench.scenarios.x"}}, 1, 0),  # up a floor
        ({"racebench.loadtests.a": {"racebench.reports.x"}}, 1, 0),  # across siblings
        ({"racebench.harness.a": {"racebench.results"}}, 0, 0),  # down
        ({"racebench.harness.a": {"racebench.harness.b"}, "racebench.harness.b": set()}, 0, 0),
        (
            {
                "racebench.harness.a": {"racebench.harness.b"},
                "racebench.harness.b": {"racebench.harness.c"},
                "racebench.harness.c": {"racebench.harness.a"},
            },
            0,
            1,
        ),
    ],
)
def test_the_checks_catch_what_they_are_for(
    arrows: dict[str, set[str]], wrong: int, circles: int
) -> None:
    assert len(upward(arrows)) == wrong
    assert len(cycles(arrows)) == circles
