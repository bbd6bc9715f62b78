"""A target: someone else's payment service on PostgreSQL, described in a TOML file.

TOML, not a Python module: the description is data (URLs, paths, SQL), no code of the user's
runs inside racebench, and a wrong value is reported with its field (`[verify].path`). The
templates are `{name}` substitutions of values the run provides; `${VAR}` (or `${VAR:-default}`)
expands from the environment when the file is read. Every key is described in README.md ("Race
your own service").
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `racebench race --target reference`: the reference service, described like any other target.
REFERENCE_TARGET = Path(__file__).with_name("reference_target.toml")
NAMED_TARGETS: dict[str, Path] = {"reference": REFERENCE_TARGET}
# Placeholder of a service command or env value that `--strategy` fills in (the reference
# service's lock strategy); a target without it is raced as it is.
STRATEGY_FIELD = "strategy"

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class TargetFileError(ValueError):
    """A target file that cannot be used; the message names the file and the field."""

    def __init__(self, where: str, field_name: str, problem: str) -> None:
        self.field = field_name
        super().__init__(f"{where}: {field_name}: {problem}")


@dataclass(frozen=True)
class ServiceSpec:
    url: str
    health: str = "/health"
    command: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 30.0


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request with templated path and JSON body."""

    method: str
    path: str
    json: Any = None


@dataclass(frozen=True)
class PaymentSpec:
    """How to make a payment: a SQL insert or an HTTP call, returning the ids scenarios need
    (payment_id and order_id at least; invoice_id when payments can share an invoice)."""

    sql: str | None = None
    http: HttpCall | None = None
    returns: dict[str, str] = field(default_factory=dict)  # http: value name -> answer key
    invoice_sql: str | None = None
    shares_invoice: bool = False  # the payment template takes {invoice_id} (split_invoice)


@dataclass(frozen=True)
class InvariantSpec:
    code: str
    name: str
    sql: str


@dataclass(frozen=True)
class TargetSpec:
    """Everything racebench needs to race one service (a parsed, checked target file)."""

    name: str
    path: Path
    service: ServiceSpec
    database_url: str
    barrier_tables: tuple[str, ...]
    key_secret: str
    webhook_secret: str
    payment: PaymentSpec
    verify: HttpCall
    webhook_path: str
    invariants: tuple[InvariantSpec, ...]
    strategy_placeholder: bool = False

    @property
    def folder(self) -> Path:
        return self.path.parent

    def can_share_invoice(self) -> bool:
        return self.payment.invoice_sql is not None or self.payment.shares_invoice


def resolve(name_or_path: str) -> Path:
    """A target name (`reference`) or a file path."""
    if name_or_path in NAMED_TARGETS:
        return NAMED_TARGETS[name_or_path]
    return Path(name_or_path)


def load(name_or_path: str | Path) -> TargetSpec:
    """Read and check a target file; TargetFileError names the field that is wrong."""
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
    return _parse(raw, path.resolve(), where)


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

    def http(self, raw: dict[str, Any], section: str) -> HttpCall:
        method = self.string(raw, "method", f"[{section}].method", required=False) or "POST"
        if method.upper() not in HTTP_METHODS:
            raise self.fail(f"[{section}].method", f"must be one of {', '.join(HTTP_METHODS)}")
        body = raw.get("json")
        if body is not None and not isinstance(body, dict | list):
            raise self.fail(f"[{section}].json", "must be a table (the JSON body)")
        self._templates(body, f"[{section}].json")
        return HttpCall(method.upper(), self.path(raw, "path", f"[{section}].path"), body)

    def _templates(self, value: Any, label: str) -> None:
        if isinstance(value, str):
            self.template(value, label)
        elif isinstance(value, dict):
            for k, v in value.items():
                self._templates(v, f"{label}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._templates(v, f"{label}[{i}]")


def _parse(raw: dict[str, Any], path: Path, where: str) -> TargetSpec:
    r = _Reader(where)
    name = r.string(raw, "name", "name", required=False) or path.stem

    service_raw = r.table(raw, "service")
    url = r.string(service_raw, "url", "[service].url")
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise r.fail("[service].url", f"must be an http:// or https:// URL (got {url!r})")
    env_raw = service_raw.get("env", {})
    if not isinstance(env_raw, dict) or not all(isinstance(v, str) for v in env_raw.values()):
        raise r.fail("[service].env", "must be a table of strings")
    env = {k: r.expand(v, f"[service].env.{k}") for k, v in env_raw.items()}
    command = r.string(service_raw, "command", "[service].command", required=False)
    health = r.string(service_raw, "health", "[service].health", required=False) or "/health"
    if not health.startswith("/"):
        raise r.fail("[service].health", f"must start with / (got {health!r})")
    timeout = service_raw.get("start_timeout_s", 30.0)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise r.fail("[service].start_timeout_s", "must be a positive number of seconds")
    placeholder = "{" + STRATEGY_FIELD + "}"
    strategy_placeholder = placeholder in (command or "") or any(
        placeholder in v for v in env.values()
    )
    service = ServiceSpec(url.rstrip("/"), health, command, env, float(timeout))

    database = r.table(raw, "database")
    database_url = r.string(database, "url", "[database].url")
    assert database_url is not None
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise r.fail("[database].url", "must be a postgresql:// URL")
    tables = database.get("barrier_tables")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise r.fail("[database].barrier_tables", "must be a non-empty list of table names")
    for table in tables:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", table):
            raise r.fail("[database].barrier_tables", f"{table!r} is not a table name")

    razorpay = r.table(raw, "razorpay")
    key_secret = r.string(razorpay, "key_secret", "[razorpay].key_secret")
    webhook_secret = r.string(razorpay, "webhook_secret", "[razorpay].webhook_secret")
    assert key_secret is not None and webhook_secret is not None

    payment = _payment(r, r.table(raw, "payment"))
    verify = r.http(r.table(raw, "verify"), "verify")
    webhook_path = r.path(r.table(raw, "webhook"), "path", "[webhook].path")

    invariants_raw = raw.get("invariants")
    if not isinstance(invariants_raw, list) or not invariants_raw:
        raise r.fail("[[invariants]]", "at least one is required (a query returning violations)")
    invariants: list[InvariantSpec] = []
    for i, inv in enumerate(invariants_raw):
        label = f"[[invariants]] #{i + 1}"
        if not isinstance(inv, dict):
            raise r.fail(label, "must be a table")
        code = r.string(inv, "code", f"{label}.code")
        sql = r.string(inv, "sql", f"{label}.sql")
        assert code is not None and sql is not None
        if not re.match(r"^[A-Z][A-Z0-9_]*$", code):
            raise r.fail(f"{label}.code", f"{code!r}: use UPPER_SNAKE_CASE")
        if code in {x.code for x in invariants}:
            raise r.fail(f"{label}.code", f"{code} appears twice")
        inv_name = r.string(inv, "name", f"{label}.name", required=False) or code
        invariants.append(InvariantSpec(code, inv_name, sql))

    unknown = set(raw) - {
        "name", "service", "database", "razorpay", "payment", "verify", "webhook", "invariants"
    }  # fmt: skip
    if unknown:
        raise r.fail(sorted(unknown)[0], "unknown key (a typo?)")
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
        webhook_path=webhook_path,
        invariants=tuple(invariants),
        strategy_placeholder=strategy_placeholder,
    )


def _payment(r: _Reader, raw: dict[str, Any]) -> PaymentSpec:
    sql = r.string(raw, "sql", "[payment].sql", required=False)
    http_raw = raw.get("http")
    if (sql is None) == (http_raw is None):
        raise r.fail("[payment]", "give exactly one of sql (an INSERT ... RETURNING) or http")
    invoice_sql = r.string(raw, "invoice_sql", "[payment].invoice_sql", required=False)
    if invoice_sql is not None:
        r.template(invoice_sql, "[payment].invoice_sql")
    http: HttpCall | None = None
    returns: dict[str, str] = {}
    if sql is not None:
        r.template(sql, "[payment].sql")
        template_text = sql
    else:
        if not isinstance(http_raw, dict):
            raise r.fail("[payment].http", "must be a table (method, path, json, returns)")
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
    return PaymentSpec(sql, http, returns, invoice_sql, shares)


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
