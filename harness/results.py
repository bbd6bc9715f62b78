"""The results file (DESIGN.md, CONTRACT: the results file): what runs write, reports read."""

from __future__ import annotations

import json
import os
import platform
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

SCHEMA = "racebench.results/1"
RESULTS_FILE = "results.json"
DEFAULT_RUNS_DIR = Path("reports") / "runs"

Mode = Literal["in_process", "http"]
Expected = Literal["safe", "race"]
Verdict = Literal["safe", "race_detected", "error"]


@dataclass
class RaceResult:
    scenario: str
    strategy: str
    mode: Mode
    runs: int
    expected: Expected
    verdict: Verdict
    violations: dict[str, int] = field(default_factory=dict)
    duration_ms: float = 0.0
    timeline: list[dict[str, Any]] = field(default_factory=list)
    # Not in the contract's minimum, but worth keeping: why a run errored, and the seed.
    error: str | None = None
    seed: int | None = None

    @property
    def passed(self) -> bool:
        """A race-expected cell passes when caught; a safe one only with no violations."""
        if self.expected == "race":
            return self.verdict == "race_detected"
        return self.verdict == "safe"


@dataclass
class LatencyMs:
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float


@dataclass
class BenchResult:
    strategy: str
    profile: str
    round: int
    users: int | None
    rate: float | None
    duration_s: float
    requests: int
    failures: int
    throughput_rps: float
    latency_ms: LatencyMs
    violations: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def new_run_id(kind: str) -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{kind}-{secrets.token_hex(3)}"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "hostname": platform.node(),
    }


@dataclass
class Results:
    run_id: str
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    environment: dict[str, Any] = field(default_factory=environment)
    race: list[RaceResult] = field(default_factory=list)
    bench: list[BenchResult] = field(default_factory=list)
    schema: str = SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema": data.pop("schema"), **data}

    def write(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def read(cls, path: Path) -> Results:
        """Load a results.json (or the one inside a run folder)."""
        if path.is_dir():
            path = path / RESULTS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from None
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not a {SCHEMA} file (schema={data.get('schema')!r})")
        race = [RaceResult(**r) for r in data.get("race", [])]
        bench = []
        for b in data.get("bench", []):
            b = dict(b)
            b["latency_ms"] = LatencyMs(**b["latency_ms"])
            bench.append(BenchResult(**b))
        return cls(
            run_id=data["run_id"],
            created_at=data["created_at"],
            environment=data.get("environment", {}),
            race=race,
            bench=bench,
        )
