"""The results file (docs/contracts.md, the results file): what runs write, reports read.

Typed models, one reader (`Results.read`). The contract: a results file may gain fields
freely (readers ignore keys they do not know); renaming or removing a field bumps the schema,
and the reader still reads every older schema (CI compares a new run with a baseline an older
racebench wrote). `racebench.results/1` kept a bag of loosely named keys (`extra`) in each
benchmark row and appended median rows as a fake round 0; `_upgrade_v1` turns such a file into
this schema's shape on read.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA = "racebench.results/2"
SCHEMA_V1 = "racebench.results/1"
READABLE_SCHEMAS = (SCHEMA, SCHEMA_V1)
RESULTS_FILE = "results.json"
DEFAULT_RUNS_DIR = Path("reports") / "runs"

Mode = Literal["in_process", "http"]
Expected = Literal["safe", "race"]
Verdict = Literal["safe", "race_detected", "error"]


class Finding(StrEnum):
    """What a verdict means against what was expected: the one reading of (expected,
    verdict), for a whole cell and for one run of it alike."""

    SAFE = "safe"  # expected to hold, and it held
    CAUGHT = "caught"  # expected to race, and the race was caught
    VIOLATED = "violated"  # expected to hold, and it left violations
    MISSED = "missed"  # expected to race, and no run caught it: the harness was blind
    ERROR = "error"  # a run broke (an unexpected answer, a schedule that did not happen)

    @property
    def passed(self) -> bool:
        return self in (Finding.SAFE, Finding.CAUGHT)


def judge(expected: Expected, *, caught: bool, errored: bool) -> Finding:
    """Read a cell (or a run): a catch decides it; else an error; else whether it held."""
    if caught:
        return Finding.CAUGHT if expected == "race" else Finding.VIOLATED
    if errored:
        return Finding.ERROR
    return Finding.MISSED if expected == "race" else Finding.SAFE


EventKind = Literal["send", "arrive", "blocked", "release", "answer", "note", "error"]
LoadModel = Literal["closed", "open"]
HARNESS_ACTOR = "-"  # the actor of the harness's own timeline events (schedule notes, errors)


class _Model(BaseModel):
    """Strict (a count written as "100" is an error, not 100), and keys it does not know are
    ignored (a newer writer's fields: forward compatibility)."""

    model_config = ConfigDict(strict=True, extra="ignore")


class TimelineEvent(_Model):
    """Something an actor did or saw at one moment (ms from the run's first launch)."""

    kind: EventKind
    actor: str
    t_ms: float
    what: str
    label: str = ""  # the schedule step that caused it (T0, T1, ...), if any


class LockWait(_Model):
    """An interval in which a backend waited on a lock, as pg_stat_activity showed it."""

    kind: Literal["lock_wait"] = "lock_wait"
    actor: str
    start_ms: float
    end_ms: float
    pid: int
    wait_event: str  # "Lock/transactionid", "Lock/advisory", ...
    query: str
    blocked_by: list[int] = Field(default_factory=list)
    holders: list[str] = Field(default_factory=list)  # the actors behind blocked_by, if known


TimelineEntry = Annotated[TimelineEvent | LockWait, Field(discriminator="kind")]


def starts_ms(entry: TimelineEvent | LockWait) -> float:
    """When a timeline entry begins: an event's time, a wait's start."""
    return entry.t_ms if isinstance(entry, TimelineEvent) else entry.start_ms


class Incidents(_Model):
    """Violations grouped by what they happened to (harness.invariants.group_incidents): a
    payment captured twice is one incident, however many invariants it broke; the per-code
    counts stay in `violations`, as the evidence. Absent (None) in files written before it
    existed, and for targets, whose invariants are their own queries."""

    payments: int = 0  # payments with any violation, each counted once
    captured_twice: int = 0  # of those, payments captured more than once
    invoices: int = 0  # invoices of those payments, and invoices whose totals are wrong
    # Currency -> minor units (paise) captured more than once: amount x (captures - 1).
    at_risk: dict[str, int] = Field(default_factory=dict)
    unattributed: int = 0  # violations tied to no payment or invoice (a lost delivery)

    def __add__(self, other: Incidents) -> Incidents:
        """Two runs' incidents together (each run has its own payments and invoices)."""
        at_risk = dict(self.at_risk)
        for currency, minor in other.at_risk.items():
            at_risk[currency] = at_risk.get(currency, 0) + minor
        return Incidents(
            payments=self.payments + other.payments,
            captured_twice=self.captured_twice + other.captured_twice,
            invoices=self.invoices + other.invoices,
            at_risk=at_risk,
            unattributed=self.unattributed + other.unattributed,
        )


def add_incidents(parts: Iterable[Incidents | None]) -> Incidents | None:
    """The sum, or None when any part was not counted (a sum of some parts would undercount)."""
    total = Incidents()
    for part in parts:
        if part is None:
            return None
        total = total + part
    return total


InvariantKind = Literal["violations", "ledger_kept"]
Ledger = Literal["", "events", "captures"]


class Invariant(_Model):
    """What "exactly once" means, one rule: a code, a friendly name, and the query that checks
    it. The one type for racebench's own invariants (harness/invariants.py) and a target's (its
    file's [[invariants]]): it travels in every check's result and into results.json, so every
    report names a violation as the invariant that found it did.

    The query's $1 is the run's payment ids (NULL: every row, on tables a run starts empty);
    a ledger invariant's $1 is instead the client's ledger (`ledger`): the webhook event ids
    answered 2xx ("events"), or the payment id of every capture answered 2xx ("captures").
    `kind` "violations": the query returns the rows that break the rule (none: it holds);
    "ledger_kept": it returns the ledger entries the database kept, as `payment_id` or
    `event_id`, and every entry it does not return is a violation.
    """

    code: str
    name: str
    sql: str
    doc: str = ""
    ledger: Ledger = ""
    kind: InvariantKind = "violations"


class RaceResult(_Model):
    scenario: str
    strategy: str
    mode: Mode
    runs: int
    expected: Expected
    verdict: Verdict
    violations: dict[str, int] = Field(default_factory=dict)
    incidents: Incidents | None = None  # the violations grouped, when they were counted
    # The invariants behind `violations`, by code: their names as the run knew them (a
    # target's own, or racebench's).
    invariants: dict[str, Invariant] = Field(default_factory=dict)
    duration_ms: float = 0.0
    # The runs by what each showed: caught (an invariant broken), broken (no catch, and an
    # error: an unexpected answer, a barrier that forced nothing); the rest held. None in
    # files written before racebench counted them.
    caught_runs: int | None = None
    broken_runs: int | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    # Not in the contract's minimum, but worth keeping: why a run errored, and the seed.
    error: str | None = None
    seed: int | None = None

    @property
    def finding(self) -> Finding:
        return judge(
            self.expected,
            caught=self.verdict == "race_detected",
            errored=self.verdict == "error",
        )

    @property
    def passed(self) -> bool:
        """A race-expected cell passes when caught; a safe one only with no violations."""
        return self.finding.passed


class LatencyMs(_Model):
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float


class CpuGroup(_Model):
    """The CPU of one group of processes (Locust, the service, its PostgreSQL backends)."""

    processes: int
    busiest_cores: float
    total_cores: float


class CpuFigures(_Model):
    """CPU sampled while Locust ran, in cores (1.0 = one core busy for the whole run)."""

    groups: dict[str, CpuGroup] = Field(default_factory=dict)  # "locust", "service", "postgres"
    cpus: int | None = None
    machine_busy: float | None = None  # share of all cores' time that was not idle
    other_cores: float | None = None  # busy cores none of the groups used: everyone else


class LocustFigures(_Model):
    """Locust's own totals from its --json-file (its percentiles are rounded: reference only)."""

    requests: int
    failures: int
    mean_ms: float
    max_ms: float
    throughput_rps: float
    percentiles_ms: dict[str, float] = Field(default_factory=dict)  # "p50" -> ms


class FaultFigures(_Model):
    """What `racebench bench --faults` did to a round's database, and how the service took it."""

    kill_every_s: float = 0.0
    kills: int = 0  # pg_terminate_backend sweeps that ran
    backends_killed: int = 0
    kill_errors: list[str] = Field(default_factory=list)
    restarts: int = 0  # fast restarts of the database server
    restart_s: float | None = None  # how long pg_ctl restart took
    recovery_s: float | None = None  # restart finished -> first 200 of /healthz (None: never)


class BenchResult(_Model):
    """One strategy in one round of `racebench bench` (rounds count from 1)."""

    strategy: str
    profile: str
    round: int
    users: int | None
    label: str | None = None  # the arm's name when it is not the strategy's (for_update#2)
    order: str = "alternate"  # how the round's arms ran: alternate, abba or concurrent
    rate: float | None
    duration_s: float
    requests: int
    failures: int
    throughput_rps: float
    latency_ms: LatencyMs
    violations: dict[str, int] = Field(default_factory=dict)
    incidents: Incidents | None = None  # the violations grouped, when they were counted
    invariants: dict[str, Invariant] = Field(default_factory=dict)  # behind `violations`
    error: str | None = None  # why the round failed; such a round counts for safety only
    workers: int = 1  # service processes
    expected_safe: bool | None = None  # holds(strategy, workers) when the round ran
    model: LoadModel = "closed"
    busy: int = 0  # 503 with Retry-After
    outcomes: dict[str, int] = Field(default_factory=dict)  # "verify:captured" -> count
    acked_webhooks: int = 0
    pool_size: int | None = None
    pool_wrapped: int = 0  # work items that had to reuse a payment
    # Payments that got two requests at the same moment (contention's items); None: not counted.
    contended_payments: int | None = None
    locust_processes: int | None = None
    locust_returncode: int | None = None
    locust_cpu_warning: bool = False  # Locust said one of its processes passed 90 % CPU
    locust: LocustFigures | None = None
    cpu: CpuFigures | None = None
    cpu_ms_per_request: float | None = None  # service + its PostgreSQL backends
    server_errors: dict[str, int] = Field(default_factory=dict)  # 5xx answers by status
    busy_without_retry_after: int = 0  # 503 answers without Retry-After
    transport_errors: int = 0  # requests with no answer (reset, refused, timed out)
    acked_captures: int = 0  # verify answers 200: payments the client was told are captured
    lost_captures: int = 0  # of those, payments the database does not hold as captured
    lost_webhooks: int = 0  # webhook deliveries answered 2xx missing from webhook_events
    faults: FaultFigures | None = None  # with --faults: the kills, the restart, the recovery

    @property
    def errored(self) -> bool:
        return self.error is not None

    @property
    def arm(self) -> str:
        """What the bench compares: the label, or the strategy when it has none."""
        return self.label or self.strategy

    @property
    def answered_honestly(self) -> bool:
        """No 5xx but 503, every 503 with Retry-After, nothing acknowledged and then lost."""
        crashed = any(status != "503" for status in self.server_errors)
        lost = self.lost_captures or self.lost_webhooks
        return not crashed and not self.busy_without_retry_after and not lost


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


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ExploreFailure(_Model):
    """The failing schedule an explore found, shrunk: replay it with
    `racebench explore --replay <schedule_file>`."""

    schedule_id: str
    choices: list[str]  # the actor released at each decision
    preemptions: int
    decisions: int
    schedule_file: str
    violations: dict[str, int] = Field(default_factory=dict)
    result: str = ""  # the RESULT line, with the first piece of evidence
    timeline: list[TimelineEntry] = Field(default_factory=list)  # the actual SQL, as it ran


class ExploreResult(_Model):
    """One `racebench explore` search: a scenario's racing transactions on one variant,
    scheduled at the PostgreSQL wire, and what it guarantees."""

    target: str
    variant: str
    scenario: str
    search: Literal["exhaustive", "pct"]
    preemption_bound: int
    schedules: int
    complete: bool  # every schedule within the bound was explored
    held: int
    violations: int  # schedules that broke an invariant
    errors: int  # schedules whose run broke (an unexpected answer)
    artifacts: int  # schedules the scheduler itself stalled: neither bug nor safe
    expected: Expected  # "race": the variant must be caught; "safe": it must hold
    passed: bool
    guarantee: str  # what was achieved, in one sentence
    seconds: float
    pct_depth: int | None = None
    seed: int | None = None
    failure: ExploreFailure | None = None

    @property
    def finding(self) -> Finding:
        return judge(
            self.expected,
            caught=self.violations > 0,
            errored=self.errors > 0 or self.artifacts > 0,
        )


class HintEvidence(_Model):
    """One statement that proves a hint: its role (read, write, check, insert, claim, work),
    its SQL, and the request type (or, from a log, the backend) that ran it."""

    role: str
    sql: str
    request: str
    transaction: int


class HintConfirmation(_Model):
    """A hint forced: explored (racebench explore, the hint's tables gated) or, for a fault,
    raced; confirmed (an invariant broke), refuted (the whole bound explored, or every run
    raced, and nothing broke) or unsettled (the budget ran out, or an artifact)."""

    verdict: Literal["confirmed", "refuted", "unsettled"]
    scenario: str
    method: Literal["explore", "race"]
    said: str  # the guarantee, in one sentence
    schedules: int  # schedules explored, or runs raced
    seconds: float
    violations: dict[str, int] = Field(default_factory=dict)
    schedule_file: str | None = None  # the failing schedule (racebench explore --replay)
    timeline: list[TimelineEntry] = Field(default_factory=list)


class Hint(_Model):
    """One suspected race, read off the service's own SQL (racebench hints)."""

    rank: int  # 1 is the most likely to hurt
    kind: Literal["lost_update", "split_check", "check_then_insert", "read_skew", "claim_first"]
    title: str
    table: str
    tables: list[str]
    columns: list[str]
    requests: list[str]  # the request types (or backends) whose transactions show it
    evidence: list[HintEvidence]
    why: str
    fix: str
    confirmation: HintConfirmation | None = None


class DraftInvariant(_Model):
    code: str
    name: str
    sql: str
    why: str


class TransactionSets(_Model):
    """One transaction's read and write sets, by table and column (each shape once)."""

    request: str
    transaction: int
    statements: int
    isolation: str | None
    reads: dict[str, list[str]]
    locked: list[str]  # the tables it read under a row lock
    writes: dict[str, list[str]]
    count: int = 1  # the transactions of this shape


class HintsResult(_Model):
    """`racebench hints` on one variant (or one statement log): its hints, ranked, with the
    barrier tables and invariants its writes suggest."""

    target: str
    variant: str
    source: Literal["proxy", "log"]
    transactions: int
    statements: int
    unparsed: int  # statements PostgreSQL's parser could not read (left out)
    hints: list[Hint]
    barrier_tables: list[str]
    invariants: list[DraftInvariant]
    expected: Expected  # "race": hints must be found (and confirmed); "safe": none may stand
    passed: bool
    seconds: float
    log_lines: int | None = None  # a log: the lines read
    answers: dict[str, int] = Field(default_factory=dict)  # request type -> its HTTP status
    sets: list[TransactionSets] = Field(default_factory=list)  # what each transaction touched
    # what makes the reading incomplete (a request that failed, nothing seen): never a pass
    problems: list[str] = Field(default_factory=list)


class Results(_Model):
    schema_: str = Field(default=SCHEMA, alias="schema")
    run_id: str
    created_at: str = Field(default_factory=_now)
    environment: dict[str, Any] = Field(default_factory=environment)
    race: list[RaceResult] = Field(default_factory=list)
    bench: list[BenchResult] = Field(default_factory=list)
    explore: list[ExploreResult] = Field(default_factory=list)
    hints: list[HintsResult] = Field(default_factory=list)

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True)
        data["schema"] = SCHEMA  # written by this racebench: this schema, whatever was read
        return data

    def write(self, run_dir: Path, copy_to: Path | None = None) -> Path:
        """results.json in `run_dir` (made if need be), and a copy at `copy_to` (--json)."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        if copy_to is not None:
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy_to)
        return path

    @classmethod
    def read(cls, path: Path) -> Results:
        """Load a results.json (or the one inside a run folder), of this schema or an older one.

        ValueError, naming the file, the entry and the field, when it is not a results file: a
        missing field, a value of the wrong type or outside the contract's choices. Keys this
        reader does not know are ignored, at the top level and in every entry, so a newer
        writer that adds a field stays readable (forward compatibility); such keys are not
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
        if data.get("schema") not in READABLE_SCHEMAS:
            raise ValueError(f"{path} is not a {SCHEMA} file (schema={data.get('schema')!r})")
        if data["schema"] == SCHEMA_V1:
            data = _upgrade_v1(data)
        # What a writer fills in by itself must be in a file: defaults are for writing only.
        missing = next((key for key in _WRITTEN_BY_EVERY_WRITER if key not in data), None)
        if missing is not None:
            raise ValueError(f"{path}: field {missing!r} is missing")
        data = {"environment": {}, **data}  # an older writer's file may have none
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ValueError(f"{path}: {_explain(error.errors()[0], data)}") from None


_WRITTEN_BY_EVERY_WRITER = ("run_id", "created_at")


# --- racebench.results/1 -------------------------------------------------------------------

# v1 kept CPU groups beside the machine's figures in one object; these were not groups.
_V1_CPU_MACHINE_KEYS = ("cpus", "machine_busy", "other_cores")
_V1_AGGREGATE_ROUND = 0
_V1_LOCUST_TOTALS = ("requests", "failures", "mean_ms", "max_ms", "throughput_rps")
_V1_PERCENTILE_KEY = re.compile(r"^(p[\d.]+)_ms$")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A racebench.results/1 file in this schema's shape: each bench row's `extra` keys become
    its fields, the median rows (round 0, recomputed by every reader) are dropped, and lock
    waits lose the `t_ms` they repeated from `start_ms`. Rows of another shape are passed on
    unchanged, for the validation to name."""
    bench = data.get("bench")
    if isinstance(bench, list):
        data = {**data, "bench": [_upgrade_v1_bench(b) for b in bench if not _v1_aggregate(b)]}
    return data


def _v1_aggregate(row: object) -> bool:
    if not isinstance(row, dict):
        return False
    extra = row.get("extra")
    return row.get("round") == _V1_AGGREGATE_ROUND or (
        isinstance(extra, dict) and "aggregate" in extra
    )


def _upgrade_v1_bench(row: object) -> object:
    if not isinstance(row, dict) or not isinstance(row.get("extra"), dict):
        return row
    extra = dict(row["extra"])
    cpu = extra.get("cpu")
    if isinstance(cpu, dict):
        extra["cpu"] = {
            "groups": {k: v for k, v in cpu.items() if k not in _V1_CPU_MACHINE_KEYS},
            **{k: cpu[k] for k in _V1_CPU_MACHINE_KEYS if k in cpu},
        }
    locust = extra.get("locust")
    if isinstance(locust, dict):
        percentiles = {
            match[1]: value
            for key, value in locust.items()
            if (match := _V1_PERCENTILE_KEY.match(key)) and key not in _V1_LOCUST_TOTALS
        }
        extra["locust"] = (
            {
                **{k: locust[k] for k in _V1_LOCUST_TOTALS if k in locust},
                "percentiles_ms": percentiles,
            }
            if locust
            else None
        )
    rest = {k: v for k, v in row.items() if k != "extra"}
    return {**extra, **rest}


# --- error messages ------------------------------------------------------------------------

_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "list",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}
# pydantic's error types, as the JSON type a field wanted.
_WANTED = {
    "int_type": "integer",
    "float_type": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "dict_type": "object",
    "list_type": "list",
    "model_type": "object",
    "model_attributes_type": "object",
}
_COUNTS = ("violations", "outcomes")  # invariant code (or outcome) -> count
_MISSING = object()


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _describe(value: object) -> str:
    """`string '100'`, `null`: a JSON value for an error message, cut short."""
    return "null" if value is None else f"{_kind(value)} {value!r:.40}"


def _entry_name(key: str, index: int, row: object) -> str:
    """`race[3] (simultaneous x none)`, `bench[1] (for_update round 1)`, `timeline[2]`."""
    name = f"{key}[{index}]"
    if isinstance(row, dict) and "scenario" in row and "strategy" in row:
        return f"{name} ({row['scenario']} x {row['strategy']})"
    if isinstance(row, dict) and "strategy" in row and "round" in row:
        return f"{name} ({row['strategy']} round {row['round']})"
    return name


def _explain(error: Any, data: dict[str, Any]) -> str:
    """One pydantic error as the entry and field it is about, in the file's own terms."""
    loc = list(error["loc"])
    # Follow the path through the data; pydantic adds the tag of a tagged union (an event's
    # kind) to it, which is not in the data and is skipped.
    names: list[str] = []  # entries, outermost first
    node: Any = data
    field_name: str | None = None
    count_of: str | None = None  # the counts field a bad count is in
    for position, key in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            names.append(_entry_name(str(field_name), key, node[key]))
            field_name, node = None, node[key]
        elif isinstance(node, dict) and isinstance(key, str) and (key in node or last):
            if field_name in _COUNTS and last:
                count_of = field_name
            elif field_name is not None:
                names.append(field_name)
            field_name, node = key, node.get(key, _MISSING)
    where = f"{', '.join(names)}: " if names else ""
    kind = error["type"]
    if kind.startswith("union_tag") and isinstance(node, dict):  # an entry's `kind`
        field_name, node = "kind", node.get("kind", _MISSING)
    if field_name is None:  # the entry itself: a list item that is not an object
        return f"{', '.join(names)} is {_describe(node)}, not an object"
    if count_of is not None:
        return f"{where}field {count_of!r}: {field_name} is {_describe(node)}, not an integer count"
    if kind == "missing" or node is _MISSING:
        return f"{where}field {field_name!r} is missing"
    if kind in ("literal_error", "union_tag_invalid"):
        ctx = error.get("ctx", {})
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected") or ctx.get("expected_tags")))
        return f"{where}field {field_name!r} is {node!r}, not one of {', '.join(choices)}"
    wanted = _WANTED.get(kind, error["msg"])
    return f"{where}field {field_name!r} is {_describe(node)}, not {wanted}"
