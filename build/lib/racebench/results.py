"""The results file (DESIGN.md, CONTRACT: the results file): what runs write, reports read."""

from __future__ import annotations

import json
import os
import platform
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

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
        """Load a results.json (or the one inside a run folder).

        ValueError, naming the entry and the field, when the file is not a results file of this
        schema: a missing field, a value of the wrong type or outside the contract's choices.
        Keys this reader does not know are ignored, at the top level and in every entry, so a
        newer writer that adds a field stays readable (forward compatibility); such keys are not
        kept, and a file written back from what was read leaves them out.
        """
        if path.is_dir():
            path = path / RESULTS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} cannot be read: {error}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a {SCHEMA} file (a {_kind(data)}, not an object)")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not a {SCHEMA} file (schema={data.get('schema')!r})")
        try:
            return cls._from_json(data)
        except _ShapeError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Results:
        top = _Entry("", data)
        run_id = top.get("run_id", str)
        created_at = top.get("created_at", str)
        environment = top.get("environment", dict, default={})
        race_rows = top.get("race", list, default=[])
        bench_rows = top.get("bench", list, default=[])
        return cls(
            run_id=run_id,
            created_at=created_at,
            environment=environment,
            race=[_race_result(_Entry.of(f"race[{i}]", r)) for i, r in enumerate(race_rows)],
            bench=[_bench_result(_Entry.of(f"bench[{i}]", b)) for i, b in enumerate(bench_rows)],
        )


class _ShapeError(Exception):
    """A field of results.json that is missing or of the wrong shape (Results.read adds the
    file's path and raises ValueError)."""


_MISSING: Any = object()
_NUMBER = (int, float)


_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "list",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _describe(value: object) -> str:
    """`string '100'`, `null`: a JSON value for an error message, cut short."""
    return "null" if value is None else f"{_kind(value)} {value!r:.40}"


def _wanted(kinds: tuple[type, ...], nullable: bool) -> str:
    names = ["number"] if float in kinds else [_TYPE_NAMES.get(k, k.__name__) for k in kinds]
    return " or ".join(names + (["null"] if nullable else []))


@dataclass(frozen=True)
class _Entry:
    """One JSON object of results.json, read field by field with its name for the errors."""

    name: str  # "" for the file's top level
    data: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.name}: " if self.name else ""

    @classmethod
    def of(cls, name: str, row: object) -> _Entry:
        if not isinstance(row, dict):
            raise _ShapeError(f"{name} is {_describe(row)}, not an object")
        entry = cls(name, row)
        if "scenario" in row and "strategy" in row:
            entry = cls(f"{name} ({row['scenario']} x {row['strategy']})", row)
        elif "strategy" in row and "round" in row:
            entry = cls(f"{name} ({row['strategy']} round {row['round']})", row)
        return entry

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        *,
        default: Any = _MISSING,
        nullable: bool = False,
        choices: tuple[str, ...] = (),
    ) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise _ShapeError(f"{self.where}field {key!r} is missing")
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise _ShapeError(
                f"{self.where}field {key!r} is {_describe(value)}, not {_wanted(kinds, nullable)}"
            )
        if choices and value not in choices:
            raise _ShapeError(
                f"{self.where}field {key!r} is {value!r}, not one of {', '.join(choices)}"
            )
        return value

    def counts(self, key: str) -> dict[str, int]:
        """A `violations` object: invariant code -> count."""
        value: dict[str, Any] = self.get(key, dict, default={})
        for code, count in value.items():
            if not isinstance(count, int) or isinstance(count, bool):
                raise _ShapeError(
                    f"{self.where}field {key!r}: {code} is {_describe(count)}, not an integer count"
                )
        return value


def _race_result(entry: _Entry) -> RaceResult:
    return RaceResult(
        scenario=entry.get("scenario", str),
        strategy=entry.get("strategy", str),
        mode=entry.get("mode", str, choices=get_args(Mode)),
        runs=entry.get("runs", int),
        expected=entry.get("expected", str, choices=get_args(Expected)),
        verdict=entry.get("verdict", str, choices=get_args(Verdict)),
        violations=entry.counts("violations"),
        duration_ms=float(entry.get("duration_ms", _NUMBER, default=0.0)),
        timeline=entry.get("timeline", list, default=[]),
        error=entry.get("error", str, default=None, nullable=True),
        seed=entry.get("seed", int, default=None, nullable=True),
    )


def _bench_result(entry: _Entry) -> BenchResult:
    latency = _Entry(f"{entry.name}, latency_ms", entry.get("latency_ms", dict))
    return BenchResult(
        strategy=entry.get("strategy", str),
        profile=entry.get("profile", str),
        round=entry.get("round", int),
        users=entry.get("users", int, nullable=True),
        rate=entry.get("rate", _NUMBER, nullable=True),
        duration_s=float(entry.get("duration_s", _NUMBER)),
        requests=entry.get("requests", int),
        failures=entry.get("failures", int),
        throughput_rps=float(entry.get("throughput_rps", _NUMBER)),
        latency_ms=LatencyMs(
            **{f.name: float(latency.get(f.name, _NUMBER)) for f in fields(LatencyMs)}
        ),
        violations=entry.counts("violations"),
        extra=entry.get("extra", dict, default={}),
    )
