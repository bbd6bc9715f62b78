"""A target's service and database: started from the target file (or found running), always
stopped; its database made by racebench when the file asks for one (`{database_url}`).

The [service] command runs in the target file's folder, in a process group of its own
(harness/processes.py), with `{python}` (racebench's Python), `{port}` (a free port),
`{variant}` (the build asked for; `{strategy}` is its older name), `{workers}` and
`{database_url}` filled in.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from racebench.harness.database import EmbeddedPostgres, provision
from racebench.harness.processes import (
    ServiceSpec,
    ServiceStartError,
    running_service,
    wait_healthy,
)
from racebench.harness.target.file import VARIANT_FIELDS, TargetSpec, Variant, fill

# How long a service's health URL may take to answer, unless [service].start_timeout_s says:
# one racebench starts may still be booting; one it only reaches should be up already.
STARTED_WAIT_S = 30.0
REACHED_WAIT_S = 2.0


class TargetUnreachable(RuntimeError):
    """The service does not answer, or does not start (its URL or command is in the message)."""


@dataclass(frozen=True)
class TargetDatabase:
    """The database the service uses: the target file's, or one racebench made for the run."""

    url: str
    server: EmbeddedPostgres | None = None  # racebench's own server: a fault may restart it

    @property
    def owned(self) -> bool:
        return self.server is not None


@contextmanager
def target_database(
    spec: TargetSpec, server_url: str | None = None, *, restartable: bool = False
) -> Iterator[TargetDatabase]:
    """The file's database; or, for `{database_url}`, a fresh one on `server_url` (else
    $DATABASE_URL's server, else an embedded PostgreSQL), dropped at the end. `restartable`:
    on an embedded server of its own, which a fault may restart."""
    if not spec.owns_database:
        yield TargetDatabase(spec.database_url)
        return
    with provision(server_url, owned=restartable) as database:
        yield TargetDatabase(database.url, database.owned_server)


@dataclass(frozen=True)
class RunningTarget:
    """A target whose service answers: its URL, its database, and its process when racebench
    started it."""

    spec: TargetSpec
    base_url: str
    database_url: str
    variant: Variant
    pid: int | None = None
    workers: int | None = None  # the service's worker processes, when racebench filled them

    @property
    def label(self) -> str:
        """How results name it: the variant, or the target's name."""
        return self.variant.name


def service_spec(
    spec: TargetSpec,
    variant: Variant,
    database_url: str,
    *,
    workers: int | None = None,
    log_path: Path | None = None,
) -> ServiceSpec:
    """The process to start for `variant` of the target (its [service].command)."""
    if spec.service.command is None:
        raise ValueError(f"{spec.path}: [service].command is not set: racebench cannot start it")
    values = _values(spec, variant, database_url, workers)
    env = {**spec.service.env, **variant.env}
    return ServiceSpec(
        name=f"{spec.name} ({variant.name})" if variant.name != spec.name else spec.name,
        argv=tuple(shlex.split(fill(spec.service.command, values))),
        url=fill(spec.service.url, values),
        health=spec.service.health,
        env={k: fill(v, values) for k, v in env.items()},
        cwd=spec.service.cwd or spec.folder,
        log_path=log_path or log_path_of(spec),
        start_timeout_s=spec.service.start_timeout_s or STARTED_WAIT_S,
    )


def _values(
    spec: TargetSpec, variant: Variant, database_url: str, workers: int | None
) -> dict[str, str]:
    values = {"python": sys.executable, "database_url": database_url}
    values["workers"] = str(workers or spec.service.workers)
    for name in VARIANT_FIELDS:
        values[name] = variant.name
    return values


@contextmanager
def running(
    spec: TargetSpec,
    variant: str | None = None,
    database_url: str | None = None,
    *,
    workers: int | None = None,
    log_path: Path | None = None,
    service_database_url: str | None = None,
) -> Iterator[RunningTarget]:
    """The target's service: started from its command (and always stopped), or checked.
    `service_database_url`: what the service is given as {database_url}, when it is not the
    database's own URL (racebench explore hands it its proxy's)."""
    chosen = spec.variant(variant)
    database = database_url or spec.database_url
    given = service_database_url or database
    if spec.service.command is None:
        url = fill(spec.service.url, _values(spec, chosen, database, workers))
        if "{port}" in url:
            raise TargetUnreachable(
                f"{spec.path}: [service].url takes {{port}}, but no [service].command starts "
                "the service on it"
            )
        try:
            wait = spec.service.start_timeout_s or REACHED_WAIT_S
            health = spec.service.health
            wait_healthy(ServiceSpec(spec.name, (), url=url, health=health, start_timeout_s=wait))
        except ServiceStartError as error:
            raise TargetUnreachable(str(error)) from None
        yield RunningTarget(spec, url, database, chosen)
        return
    process = service_spec(spec, chosen, given, workers=workers, log_path=log_path)
    try:
        with running_service(process) as service:
            yield RunningTarget(
                spec,
                service.base_url,
                database,
                chosen,
                service.pid,
                workers or spec.service.workers,
            )
    except ServiceStartError as error:
        raise TargetUnreachable(str(error)) from None


def log_path_of(spec: TargetSpec) -> Path:
    """The service's output: next to the target file, or in the temporary folder for a target
    shipped inside racebench (never into an installed package)."""
    name = f".racebench-{spec.name}.log"
    if spec.folder == Path(__file__).resolve().parent or not os.access(spec.folder, os.W_OK):
        return Path(tempfile.gettempdir()) / name
    return spec.folder / name
