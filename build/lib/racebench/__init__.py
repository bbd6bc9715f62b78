"""racebench: force, detect and measure the payment-capture race.

One import name. Its floors, top to bottom (tests/test_layers.py keeps them so):
- commands: `racebench.cli`, `racebench.demo`, `racebench.serve`, `racebench.pytest_plugin`
  (nothing imports these);
- `racebench.reports` and `racebench.loadtests` (neither imports the other);
- `racebench.scenarios`;
- `racebench.harness`;
- `racebench.reference_service`;
- `racebench.results`: the results contract every floor reads and writes.

The folders of the floors stay at the repository root (harness/, reference_service/,
scenarios/, loadtests/, reports/); pyproject.toml maps them into this package.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("racebench")
except PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
    __version__ = "0+unknown"
