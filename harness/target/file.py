"""A target: someone else's payment service on PostgreSQL, described in a TOML file.

TOML, not a Python module: the description is data (URLs, paths, SQL), no code of the user's
runs inside racebench, and a wrong value is reported with its field (`[verify].path`). The
templates are `{name}` substitutions of values the run provides; `${VAR}` (or `${VAR:-default}`)
expands from the environment when the file is read. Every key is described in
docs/targets.md; a key that was renamed is reported with its new name.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from racebench.harness.invariants import BY_CODE as BUILTIN_INVARIANTS
from racebench.results import Expected, Invariant

# `racebench race --target reference`: the reference service, described like any other target.
REFERENCE_TARGET = Path(__file__).with_name("reference.toml")
NAMED_TARGETS: dict[str, Path] = {"reference": REFERENCE_TARGET}
# The placeholder of a service's command or env that names the variant (the build) to start;
# `{strategy}` is its older name, still read.
VARIANT_FIELDS = ("variant", "strategy")
# Placeholders racebench fills in a service's command, env and URL.
SERVICE_FIELDS = ("python", "port", "database_url", "workers", *VARIANT_FIELDS)
# `[database].url = "{database_url}"`: racebench makes the database (on --database-url's
# server, $DATABASE_URL's, or an embedded one) and hands it to the service.
DATABASE_FIELD = "database_url"
# A variant's `caught_by = "races"`: every scenario that races captures concurrently.
RACES: Literal["races"] = "races"
# Worker processes of a service whose command takes {workers}, unless [service].workers says.
DEFAULT_WORKERS = 1

# ${VAR} or ${VAR:-default}; a default may hold racebench's own {placeholders}.
_ENV_VAR = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\{[A-Za-z_][A-Za-z0-9_]*\})*))?\}"
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TOP_LEVEL_KEYS = (
    "name",
    "service",
    "database",
    "razorpay",
    "payment",
    "verify",
    "webhook",
    "invariants",
    "builtin_invariants",
    "variants",
)
# Keys that were renamed: (table or "", old) -> the new key, named in the error.
RENAMED: dict[tuple[str, str], str] = {}


class TargetFileError(ValueError):
    """A target file that cannot be used; the message names the file and the field."""

    def __init__(self, where: str, field_name: str, problem: str) -> None:
        self.field = field_name
        super().__init__(f"{where}: {field_name}: {problem}")


@dataclass(frozen=True)
class ServiceTemplate:
    """[service]: how to reach the service, and how to start it (`command`), with `{port}`,
    `{python}`, `{database_url}`, `{workers}` and `{variant}` filled in by racebench."""

    url: str
    health: str = "/health"
    command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # How long its health URL may take to answer: a service racebench starts may be booting;
    # one it only reaches should be up already (a refused connection is then said at once).
    start_timeout_s: float | None = None  # None: STARTED_WAIT_S, or REACHED_WAIT_S
    workers: int = DEFAULT_WORKERS
    cwd: Path | None = None  # where the command runs (default: the target file's folder)

    def takes(self, placeholder: str) -> bool:
        """Whether the command, the env or the URL has `{placeholder}` in it."""
        token = "{" + placeholder + "}"
        texts = [self.url, self.command or "", *self.env.values()]
        return any(token in text for text in texts)


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request with templated path and JSON body."""

    method: str
    path: str
    json: Any = None
    # The answer's JSON field and the values that say the request acted (captured); empty:
    # not named, so only its status and the database can tell.
    acted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def says_it_acted(self, body: Any) -> bool | None:
        """Whether an answer's body says it acted (None: the file names no such field)."""
        if not self.acted:
            return None
        if not isinstance(body, dict):
            return False
        return all(str(body.get(key)) in values for key, values in self.acted.items())


@dataclass(frozen=True)
class PaymentSpec:
    """How to make a payment: a SQL insert or an HTTP call, returning the ids scenarios need
    (payment_id and order_id at least; invoice_id when payments can share an invoice)."""

    sql: str | None = None
    http: HttpCall | None = None
    returns: dict[str, str] = field(default_factory=dict)  # http: value name -> answer key
    invoice_sql: str | None = None
    shares_invoice: bool = False  # the payment template takes {invoice_id} (split_invoice)
    # Which of $1 (payment ids) are captured: the client ledger's query (ACKNOWLEDGED_LOST).
    captured_sql: str | None = None
    # A row lock on payment $1 (SELECT ... FOR UPDATE): racebench holds it for the faults.
    lock_sql: str | None = None


@dataclass(frozen=True)
class Variant:
    """One build of the service that racebench can start (its `{variant}`), and what it must
    show: hold every invariant, or be caught by the scenarios in `caught_by`."""

    name: str
    env: dict[str, str] = field(default_factory=dict)  # over [service].env
    caught_by: tuple[str, ...] | Literal["races"] = ()
    summary: str = ""

    def expected(self, scenario: str, races: bool) -> Expected:
        """What a scenario (`races`: one that races captures concurrently) expects of it."""
        if self.caught_by == RACES:
            return "race" if races else "safe"
        return "race" if scenario in self.caught_by else "safe"

    @property
    def canary(self) -> bool:
        """A known-bad build: some scenario must catch it."""
        return bool(self.caught_by)


@dataclass(frozen=True)
class TargetSpec:
    """Everything racebench needs to race one service (a parsed, checked target file)."""

    name: str
    path: Path
    service: ServiceTemplate
    database_url: str  # may be "{database_url}": racebench makes the database
    barrier_tables: tuple[str, ...]
    key_secret: str
    webhook_secret: str
    payment: PaymentSpec
    verify: HttpCall
    webhook: HttpCall
    invariants: tuple[Invariant, ...]
    variants: dict[str, Variant] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def webhook_path(self) -> str:
        return self.webhook.path

    @property
    def takes_variant(self) -> bool:
        """The service's command or env names a variant ({variant}, or {strategy})."""
        return any(self.service.takes(f) for f in VARIANT_FIELDS) or bool(self.variants)

    @property
    def owns_database(self) -> bool:
        """racebench makes the service's database (`[database].url = "{database_url}"`)."""
        return "{" + DATABASE_FIELD + "}" in self.database_url

    def can_share_invoice(self) -> bool:
        return self.payment.invoice_sql is not None or self.payment.shares_invoice

    def variant(self, name: str | None) -> Variant:
        """A declared variant, or (a target that declares none) one named on the command line,
        expected to hold; None: the target as it is."""
        if name is None:
            return Variant(self.name)
        return self.variants.get(name) or Variant(name)


def resolve(name_or_path: str) -> Path:
    """A target name (`reference`) or a file path."""
    if name_or_path in NAMED_TARGETS:
        return NAMED_TARGETS[name_or_path]
    return Path(name_or_path)


def load(name_or_path: str | Path, *, skeleton: bool = False) -> TargetSpec:
    """Read and check a target file; TargetFileError names the field that is wrong.
    `skeleton`: a first file for `racebench target init`, which may leave out
    [database].barrier_tables and [[invariants]] (init drafts them)."""
    path = resolve(str(name_or_path))
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(NAMED_TARGETS)
        raise TargetFileError(where, "file", f"no such file (or a named target: {known})") from None
    except OSError as error:
        raise TargetFileError(where, "file", str(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise TargetFileError(where, "file", f"not valid TOML: {error}") from None
    return _parse(raw, path.resolve(), where, skeleton=skeleton)


class _Reader:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field_name: str, problem: str) -> TargetFileError:
        return TargetFileError(self.where, field_name, problem)

    def table(self, raw: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"[{key}]", "missing (this table is required)")
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"[{key}]", "must be a table")
        return value

    def string(
        self, raw: dict[str, Any], key: str, label: str, *, required: bool = True
    ) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(label, "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(label, "must be a non-empty string")
        return self.expand(value, label)

    def strings(self, raw: Any, label: str) -> dict[str, str]:
        """A table of strings (env), each expanded from the environment."""
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise self.fail(label, "must be a table of strings")
        return {k: self.expand(v, f"{label}.{k}") for k, v in raw.items()}

    def expand(self, value: str, label: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found:
                return found
            if default is not None:
                return default
            raise self.fail(label, f"${{{name}}} is not set in the environment")

        return _ENV_VAR.sub(one, value)

    def template(self, value: str, label: str, allowed: set[str] | None = None) -> str:
        """Check a `{name}` template's syntax (and names, when `allowed` is given)."""
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        except ValueError as error:
            raise self.fail(
                label, f"bad template ({error}); write {{{{ for a literal brace"
            ) from None
        for name in names:
            if not _IDENT.match(name):
                raise self.fail(label, f"bad placeholder {{{name}}}: use plain names")
            if allowed is not None and name not in allowed:
                raise self.fail(label, f"unknown placeholder {{{name}}}; known: {sorted(allowed)}")
        return value

    def path(self, raw: dict[str, Any], key: str, label: str) -> str:
        value = self.string(raw, key, label)
        assert value is not None
        if not value.startswith("/"):
            raise self.fail(label, f"must start with / (got {value!r})")
        return self.template(value, label)

    def acted(self, raw: Any, label: str) -> dict[str, tuple[str, ...]]:
        """`acted = { status = ["captured"] }`: an answer field and the values saying it acted."""
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not raw:
            raise self.fail(label, 'must be a table: the answer\'s field = ["values", ...]')
        acted: dict[str, tuple[str, ...]] = {}
        for key, values in raw.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not values:
                raise self.fail(f"{label}.{key}", "must be a list of the values that mean it acted")
            acted[key] = tuple(str(v) for v in values)
        return acted

    def http(self, raw: dict[str, Any], section: str) -> HttpCall:
        method = self.string(raw, "method", f"[{section}].method", required=False) or "POST"
        if method.upper() not in HTTP_METHODS:
            raise self.fail(f"[{section}].method", f"must be one of {', '.join(HTTP_METHODS)}")
        body = raw.get("json")
        if body is not None and not isinstance(body, dict | list):
            raise self.fail(f"[{section}].json", "must be a table (the JSON body)")
        self._templates(body, f"[{section}].json")
        return HttpCall(
            method.upper(),
            self.path(raw, "path", f"[{section}].path"),
            body,
            self.acted(raw.get("acted"), f"[{section}].acted"),
        )

    def keys(self, raw: dict[str, Any], table: str, known: tuple[str, ...]) -> None:
        """An unknown key is a typo (or a key that was renamed: its new name is given)."""
        for key in raw:
            if key in known:
                continue
            label = f"[{table}].{key}" if table else key
            renamed = RENAMED.get((table, key))
            if renamed is not None:
                raise self.fail(label, f"renamed: write {renamed} instead")
            raise self.fail(label, f"unknown key (a typo?); known: {', '.join(known)}")

    def _templates(self, value: Any, label: str) -> None:
        if isinstance(value, str):
            self.template(value, label)
        elif isinstance(value, dict):
            for k, v in value.items():
                self._templates(v, f"{label}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._templates(v, f"{label}[{i}]")


def _parse(raw: dict[str, Any], path: Path, where: str, *, skeleton: bool = False) -> TargetSpec:
    r = _Reader(where)
    r.keys(raw, "", TOP_LEVEL_KEYS)
    name = r.string(raw, "name", "name", required=False) or path.stem
    service = _service(r, r.table(raw, "service"), path.parent)

    database = r.table(raw, "database")
    r.keys(database, "database", ("url", "barrier_tables"))
    database_url = r.string(database, "url", "[database].url")
    assert database_url is not None
    if database_url != "{" + DATABASE_FIELD + "}" and not database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise r.fail(
            "[database].url",
            'must be a postgresql:// URL, or "{database_url}" for one that racebench makes',
        )
    tables = database.get("barrier_tables", [] if skeleton else None)
    if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
        raise r.fail("[database].barrier_tables", "must be a non-empty list of table names")
    if not tables and not skeleton:
        raise r.fail("[database].barrier_tables", "must be a non-empty list of table names")
    for table in tables:
        if not _TABLE.match(table):
            raise r.fail("[database].barrier_tables", f"{table!r} is not a table name")

    razorpay = r.table(raw, "razorpay")
    r.keys(razorpay, "razorpay", ("key_secret", "webhook_secret"))
    key_secret = r.string(razorpay, "key_secret", "[razorpay].key_secret")
    webhook_secret = r.string(razorpay, "webhook_secret", "[razorpay].webhook_secret")
    assert key_secret is not None and webhook_secret is not None

    payment = _payment(r, r.table(raw, "payment"))
    verify_raw = r.table(raw, "verify")
    r.keys(verify_raw, "verify", ("method", "path", "json", "acted"))
    verify = r.http(verify_raw, "verify")
    webhook_raw = r.table(raw, "webhook")
    r.keys(webhook_raw, "webhook", ("path", "acted"))
    webhook = HttpCall(
        "POST",
        r.path(webhook_raw, "path", "[webhook].path"),
        acted=r.acted(webhook_raw.get("acted"), "[webhook].acted"),
    )
    return TargetSpec(
        name=name,
        path=path,
        service=service,
        database_url=database_url,
        barrier_tables=tuple(tables),
        key_secret=key_secret,
        webhook_secret=webhook_secret,
        payment=payment,
        verify=verify,
        webhook=webhook,
        invariants=_invariants(r, raw, payment, skeleton=skeleton),
        variants=_variants(r, raw.get("variants")),
    )


def _service(r: _Reader, raw: dict[str, Any], folder: Path) -> ServiceTemplate:
    r.keys(raw, "service", ("url", "command", "health", "env", "start_timeout_s", "workers", "cwd"))
    url = r.string(raw, "url", "[service].url")
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise r.fail("[service].url", f"must be an http:// or https:// URL (got {url!r})")
    env = r.strings(raw.get("env"), "[service].env")
    command = r.string(raw, "command", "[service].command", required=False)
    health = r.string(raw, "health", "[service].health", required=False) or "/health"
    if not health.startswith("/"):
        raise r.fail("[service].health", f"must start with / (got {health!r})")
    timeout = raw.get("start_timeout_s")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise r.fail("[service].start_timeout_s", "must be a positive number of seconds")
    workers = raw.get("workers", DEFAULT_WORKERS)
    if not isinstance(workers, int) or workers < 1:
        raise r.fail("[service].workers", "must be a whole number of processes, 1 or more")
    cwd_text = r.string(raw, "cwd", "[service].cwd", required=False)
    cwd = (folder / cwd_text).resolve() if cwd_text is not None else None
    if cwd is not None and not cwd.is_dir():
        raise r.fail("[service].cwd", f"{cwd} is not a folder")
    return ServiceTemplate(
        url.rstrip("/"),
        health,
        command,
        env,
        float(timeout) if timeout is not None else None,
        workers,
        cwd,
    )


def _payment(r: _Reader, raw: dict[str, Any]) -> PaymentSpec:
    r.keys(raw, "payment", ("sql", "http", "invoice_sql", "captured_sql", "lock_sql"))
    sql = r.string(raw, "sql", "[payment].sql", required=False)
    http_raw = raw.get("http")
    if (sql is None) == (http_raw is None):
        raise r.fail("[payment]", "give exactly one of sql (an INSERT ... RETURNING) or http")
    invoice_sql = r.string(raw, "invoice_sql", "[payment].invoice_sql", required=False)
    if invoice_sql is not None:
        r.template(invoice_sql, "[payment].invoice_sql")
    captured_sql = r.string(raw, "captured_sql", "[payment].captured_sql", required=False)
    lock_sql = r.string(raw, "lock_sql", "[payment].lock_sql", required=False)
    for label, query in (("captured_sql", captured_sql), ("lock_sql", lock_sql)):
        if query is not None and "$1" not in query:
            raise r.fail(f"[payment].{label}", "must take the payment id(s) as $1")
    http: HttpCall | None = None
    returns: dict[str, str] = {}
    if sql is not None:
        r.template(sql, "[payment].sql")
        template_text = sql
    else:
        if not isinstance(http_raw, dict):
            raise r.fail("[payment].http", "must be a table (method, path, json, returns)")
        r.keys(http_raw, "payment.http", ("method", "path", "json", "returns"))
        http = r.http(http_raw, "payment.http")
        returns_raw = http_raw.get("returns", {})
        if not isinstance(returns_raw, dict) or not all(
            isinstance(v, str) for v in returns_raw.values()
        ):
            raise r.fail("[payment.http].returns", "must map value names to answer keys")
        returns = dict(returns_raw)
        missing = {"payment_id", "order_id"} - set(returns)
        if missing:
            raise r.fail("[payment.http].returns", f"must name {', '.join(sorted(missing))}")
        template_text = repr(http.json) + http.path
    shares = "{invoice_id}" in template_text
    return PaymentSpec(sql, http, returns, invoice_sql, shares, captured_sql, lock_sql)


def _invariants(
    r: _Reader, raw: dict[str, Any], payment: PaymentSpec, *, skeleton: bool = False
) -> tuple[Invariant, ...]:
    """racebench's own (builtin_invariants: on the contract's tables), the file's own, and the
    client ledger's check when the file says how to see a payment captured."""
    invariants: list[Invariant] = []
    builtin = raw.get("builtin_invariants")
    if builtin is not None:
        if builtin == "all":
            invariants.extend(BUILTIN_INVARIANTS.values())
        elif isinstance(builtin, list) and all(c in BUILTIN_INVARIANTS for c in builtin):
            invariants.extend(BUILTIN_INVARIANTS[c] for c in builtin)
        else:
            raise r.fail(
                "builtin_invariants",
                f'"all", or a list of: {", ".join(BUILTIN_INVARIANTS)} (racebench\'s own, on '
                "the tables of docs/contracts.md)",
            )
    own = raw.get("invariants", [])
    if not isinstance(own, list):
        raise r.fail("[[invariants]]", "must be an array of tables ([[invariants]])")
    for i, inv in enumerate(own):
        label = f"[[invariants]] #{i + 1}"
        if not isinstance(inv, dict):
            raise r.fail(label, "must be a table")
        r.keys(inv, "invariants", ("code", "name", "sql", "doc"))
        code = r.string(inv, "code", f"{label}.code")
        sql = r.string(inv, "sql", f"{label}.sql")
        assert code is not None and sql is not None
        if not _CODE.match(code):
            raise r.fail(f"{label}.code", f"{code!r}: use UPPER_SNAKE_CASE")
        if code in {x.code for x in invariants}:
            raise r.fail(f"{label}.code", f"{code} appears twice")
        name = r.string(inv, "name", f"{label}.name", required=False) or code
        doc = r.string(inv, "doc", f"{label}.doc", required=False) or ""
        invariants.append(Invariant(code=code, name=name, sql=sql, doc=doc))
    codes = {x.code for x in invariants}
    if payment.captured_sql is not None and LEDGER_CODE not in codes:
        invariants.append(ledger_invariant(payment.captured_sql))
    elif payment.captured_sql is not None and not any(
        x.code == LEDGER_CODE and x is BUILTIN_INVARIANTS.get(LEDGER_CODE) for x in invariants
    ):
        raise r.fail(
            "[[invariants]]",
            f"{LEDGER_CODE} is the client ledger's check, made from [payment].captured_sql",
        )
    if not invariants and not skeleton:
        raise r.fail(
            "[[invariants]]",
            "at least one is required (a query returning violations), or builtin_invariants",
        )
    return tuple(invariants)


LEDGER_CODE = "ACKNOWLEDGED_LOST"


def ledger_invariant(captured_sql: str) -> Invariant:
    """The client ledger on a target: every capture the service acknowledged (2xx) must be
    captured, as [payment].captured_sql sees it."""
    return Invariant(
        code=LEDGER_CODE,
        name="Acknowledged capture lost",
        doc="The service answered 2xx to a capture (a checkout callback, or a payment.captured "
        "or order.paid delivery), but the payment is not captured: the client was told "
        "something the database does not hold.",
        sql=captured_sql,
        ledger="captures",
        kind="ledger_kept",
    )


def _variants(r: _Reader, raw: Any) -> dict[str, Variant]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise r.fail("[variants]", "must be a table: one entry per build, name = { ... }")
    variants: dict[str, Variant] = {}
    for name, body in raw.items():
        label = f"[variants].{name}"
        if not _IDENT.match(name):
            raise r.fail(label, "a variant's name is a plain name (letters, digits, _)")
        if not isinstance(body, dict):
            raise r.fail(label, "must be a table (env, caught_by, summary), {} for none")
        r.keys(body, f"variants.{name}", ("env", "caught_by", "summary"))
        caught = body.get("caught_by", [])
        caught_by: tuple[str, ...] | Literal["races"]
        if caught == RACES:
            caught_by = RACES
        elif isinstance(caught, list) and all(isinstance(c, str) for c in caught):
            caught_by = tuple(caught)
        else:
            raise r.fail(
                f"{label}.caught_by",
                f'"{RACES}" (every scenario that races captures), or a list of scenario names',
            )
        summary = r.string(body, "summary", f"{label}.summary", required=False) or ""
        variants[name] = Variant(
            name, r.strings(body.get("env"), f"{label}.env"), caught_by, summary
        )
    return variants


# -- templating ----------------------------------------------------------------------------


def render_sql(template: str, values: dict[str, Any]) -> str:
    """A SQL template with `values` in it: None is NULL, the rest as text (quote in the file)."""
    return template.format_map(_Values(values, sql=True))


def render_text(template: str, values: dict[str, Any]) -> str:
    return template.format_map(_Values(values, sql=False))


def render_json(template: Any, values: dict[str, Any]) -> Any:
    """A JSON body template: a string that is exactly `{name}` becomes the value itself (an
    int stays an int, None becomes null); other strings are formatted."""
    if isinstance(template, str):
        match = re.fullmatch(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
        if match:
            return _Values(values, sql=False).raw(match.group(1))
        return render_text(template, values)
    if isinstance(template, dict):
        return {k: render_json(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render_json(v, values) for v in template]
    return template


def fill(text: str, values: Mapping[str, Any]) -> str:
    """`{name}` placeholders of a service field filled in; other braces are left alone."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


class UnknownValue(KeyError):
    """A template asked for a value the run does not have."""


class _Values(dict[str, Any]):
    def __init__(self, values: dict[str, Any], *, sql: bool) -> None:
        super().__init__(values)
        self.sql = sql

    def raw(self, key: str) -> Any:
        if key not in self:
            raise UnknownValue(f"no value {{{key}}} (known: {', '.join(sorted(self))})")
        return dict.__getitem__(self, key)

    def __missing__(self, key: str) -> Any:
        raise UnknownValue(f"no value {{{key}}} (known: {', '.join(sorted(self))})")

    def __getitem__(self, key: str) -> Any:
        value = self.raw(key)
        if value is None:
            return "NULL" if self.sql else ""
        return value
