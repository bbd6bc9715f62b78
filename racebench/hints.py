"""`racebench hints` and `racebench target init`: the service's own SQL, read for the unguarded
read-then-write before any race is run (harness/hints/).

For each variant: its service started behind racebench's proxy, each request type sent once
(verify, the capture event, the failure event), every transaction's read and write sets taken
from PostgreSQL's own parser, the hints ranked, and (--confirm) each one forced by an explore
run that gates its tables. Or a statement log (--log) from a real environment, read the same way.
The barrier tables and draft invariants the writes suggest come with them; `target init` writes
them into a target file.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from racebench.console import console as make_console
from racebench.explore import ExploreProgress, run_async, save_schedule
from racebench.harness.database import connect, parse_url
from racebench.harness.explore.explorer import one_line, schedule_timeline
from racebench.harness.hints.accesses import facts
from racebench.harness.hints.confirm import (
    DEFAULT_BOUND,
    DEFAULT_BUDGET,
    Confirmation,
    cannot,
    confirm,
    scenario_for,
)
from racebench.harness.hints.draft import Drafts, drafts_of, target_file
from racebench.harness.hints.rules import TOP, Hint, analyse, read_write_sets
from racebench.harness.hints.statement_log import DEFAULT_PREFIX
from racebench.harness.hints.transcript import Schema, Transcript, drive, from_log, read_schema
from racebench.harness.target.file import TargetSpec, Variant
from racebench.harness.target.file import load as load_target
from racebench.harness.target.matrix import choose_variants, variant_arg
from racebench.results import (
    DEFAULT_RUNS_DIR,
    DraftInvariant,
    HintConfirmation,
    HintEvidence,
    HintsResult,
    Invariant,
    Results,
    TransactionSets,
    new_run_id,
)
from racebench.results import Hint as HintEntry
from racebench.scenarios import SCENARIOS

SQL_WIDTH = 150  # the terminal shows this much of each statement (results.json: all of it)


@dataclass(frozen=True)
class Confirming:
    """--confirm: force each hint, within this budget."""

    budget: int = DEFAULT_BUDGET
    bound: int = DEFAULT_BOUND


def run_hints(
    *,
    target: str = "reference",
    strategies: str | None = None,
    log: Path | None = None,
    log_prefix: str = DEFAULT_PREFIX,
    schema_url: str | None = None,
    confirming: Confirming | None = None,
    canary: bool = False,
    database_url: str | None = None,
    workers: int | None = None,
    out: Path | None = None,
    json_path: Path | None = None,
    show_sets: bool = False,
) -> int:
    """Hints for each variant (or one log); results.json; 0 iff every variant is as expected:
    a canary has a hint (with --confirm, a confirmed one in its top 3); any other has none
    that stands (with --confirm, every hint refuted)."""
    run_id = new_run_id("hints")
    run_dir = out or DEFAULT_RUNS_DIR / run_id
    console, err = make_console(), make_console(stderr=True)
    entries: list[HintsResult] = []
    started = time.perf_counter()
    if log is not None:
        if confirming is not None:
            raise ValueError("--confirm needs a service to race (--target), not a --log")
        entries.append(_from_log(log, log_prefix, schema_url, canary, console, show_sets))
        environment: dict[str, Any] = {"log": str(log), "log_prefix": log_prefix}
    else:
        spec = load_target(target, skeleton=True)  # barrier tables, invariants: drafted here
        progress = ExploreProgress(err)
        for variant in choose_variants(spec, strategies or "all"):
            entry = run_async(
                _variant(
                    spec,
                    variant,
                    confirming,
                    canary,
                    database_url,
                    workers,
                    progress,
                    err,
                    run_dir,
                )
            )
            entries.append(entry)
            show(console, entry, sets=show_sets)
        environment = {"target": {"name": spec.name, "path": str(spec.path)}}
    results = Results(run_id=run_id, hints=entries)
    results.environment.update(environment)
    path = results.write(run_dir, copy_to=json_path)
    failed = [e for e in entries if not e.passed]
    console.print(
        f"{len(entries) - len(failed)}/{len(entries)} as expected in "
        f"{time.perf_counter() - started:.1f} s; results: {path}",
        highlight=False,
    )
    return 1 if failed else 0


def _expected(variant: Variant, canary: bool) -> str:
    return "race" if canary or variant.canary else "safe"


async def _variant(
    spec: TargetSpec,
    variant: Variant,
    confirming: Confirming | None,
    canary: bool,
    database_url: str | None,
    workers: int | None,
    progress: ExploreProgress,
    err: Console,
    run_dir: Path,
) -> HintsResult:
    started = time.perf_counter()
    arg = variant_arg(spec, variant)
    err.print(f"hints {spec.name} x {variant.name}: each request once, through the proxy")
    transcript = await drive(spec, arg, database_url=database_url, workers=workers)
    hints = analyse(transcript)
    drafts = drafts_of(transcript, spec.payment.captured_sql)
    confirmations: list[HintConfirmation | None] = [None] * len(hints)
    if confirming is not None:
        forcing, drafted = _with_drafts(spec, drafts, err)
        for i, hint in enumerate(hints):
            scenario = scenario_for(hint, forcing, transcript.payment_table)
            script = SCENARIOS[scenario].on_target(forcing)
            if isinstance(script, str):
                found = cannot(scenario, f"{scenario} does not run here: {script}")
                confirmations[i] = _confirmation(found, None)
                continue
            task = progress.search(
                f"confirm #{i + 1} {hint.id} x {variant.name}", confirming.budget
            )
            try:
                found = await confirm(
                    hint,
                    forcing,
                    arg,
                    scenario,
                    script,
                    budget=confirming.budget,
                    bound=confirming.bound,
                    database_url=database_url,
                    progress=task,
                )
            finally:
                task.close()
            saved = None
            if found.failure is not None:
                saved = save_schedule(
                    spec,
                    arg,
                    scenario,
                    found.failure,
                    run_dir,
                    evidence=found.said,
                    gate=hint.tables,
                    gate_reads=hint.kind == "read_skew",
                    invariants=drafted,
                    prefix=f"hint-{hint.kind}-",
                )
            confirmations[i] = _confirmation(found, saved)
    return _entry(
        spec.name,
        variant.name,
        transcript,
        hints,
        confirmations,
        drafts,
        _expected(variant, canary),
        time.perf_counter() - started,
    )


def _with_drafts(
    spec: TargetSpec, drafts: Drafts, err: Console
) -> tuple[TargetSpec, tuple[Invariant, ...]]:
    """The target to force hints on: a file without invariants of its own (a skeleton, as
    target init takes) is checked with the drafted ones, and held at the drafted barrier
    tables when it names none; with the invariants it was given."""
    drafted: tuple[Invariant, ...] = ()
    if not any(not i.ledger for i in spec.invariants):
        drafted = tuple(Invariant(code=d.code, name=d.name, sql=d.sql) for d in drafts.invariants)
        codes = ", ".join(i.code for i in drafted) or "none"
        err.print(f"{spec.path} has no invariants of its own: forcing with the drafted ({codes})")
        spec = replace(spec, invariants=(*spec.invariants, *drafted))
    if not spec.barrier_tables:
        spec = replace(spec, barrier_tables=drafts.barrier_tables)
    return spec, drafted


def _from_log(
    log: Path,
    prefix: str,
    schema_url: str | None,
    canary: bool,
    console: Console,
    show_sets: bool,
) -> HintsResult:
    started = time.perf_counter()
    schema = asyncio.run(_schema(schema_url)) if schema_url is not None else None
    try:
        transcript, lines = from_log(log, prefix, schema)
    except OSError as error:
        raise ValueError(f"--log {log}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"--log {log}: not a text log ({error.reason})") from None
    hints = analyse(transcript)
    entry = _entry(
        log.name,
        "log",
        transcript,
        hints,
        [None] * len(hints),
        drafts_of(transcript),
        "race" if canary else "safe",
        time.perf_counter() - started,
    )
    entry.log_lines = lines
    show(console, entry, sets=show_sets)
    return entry


async def _schema(url: str) -> Schema:
    db = await connect(parse_url(url))
    try:
        return await read_schema(db)
    finally:
        await db.close()


def _entry(
    target: str,
    variant: str,
    transcript: Transcript,
    hints: Sequence[Hint],
    confirmations: Sequence[HintConfirmation | None],
    drafts: Drafts,
    expected: str,
    seconds: float,
) -> HintsResult:
    statements = [s for t in transcript.transactions for s in t.statements]
    entries = [
        HintEntry(
            rank=n,
            kind=hint.kind,
            title=hint.title,
            table=hint.table,
            tables=list(hint.tables),
            columns=list(hint.columns),
            requests=hint.requests,
            evidence=[HintEvidence(**vars(e)) for e in hint.evidence],
            why=hint.why,
            fix=hint.fix,
            confirmation=found,
        )
        for n, (hint, found) in enumerate(zip(hints, confirmations, strict=True), start=1)
    ]
    problems = _problems(transcript)
    passed = _passed(entries, expected) and not problems
    return HintsResult(
        target=target,
        variant=variant,
        source="log" if transcript.source == "log" else "proxy",
        transactions=len(transcript.transactions),
        statements=len(statements),
        unparsed=sum(not facts(s).parsed for s in set(statements)),
        hints=entries,
        barrier_tables=list(drafts.barrier_tables),
        invariants=[DraftInvariant(**vars(d)) for d in drafts.invariants],
        expected="race" if expected == "race" else "safe",
        passed=passed,
        seconds=round(seconds, 3),
        answers=dict(transcript.answers),
        problems=problems,
        sets=[
            TransactionSets(
                request=x.request,
                transaction=x.transaction,
                statements=x.statements,
                isolation=x.isolation,
                reads={t: list(c) for t, c in x.reads.items()},
                locked=list(x.locked),
                writes={t: list(c) for t, c in x.writes.items()},
                count=x.count,
            )
            for x in read_write_sets(transcript)
        ],
    )


def _problems(transcript: Transcript) -> list[str]:
    """Why the transcript may be missing transactions: a request that did not answer 2xx, or
    no statement that wrote anything."""
    problems = [
        f"{request} answered {status}: its transactions may be missing or cut short"
        for request, status in transcript.answers.items()
        if not 200 <= status < 300
    ]
    writes = any(facts(s).writes for t in transcript.transactions for s in t.statements)
    if not writes and transcript.source == "log":
        problems.append(
            "no statement in the log wrote anything: nothing to read hints from (is the server "
            "set to log_statement = 'all', and --log-prefix its log_line_prefix?)"
        )
    elif not writes:
        problems.append(
            "no statement through racebench's proxy wrote anything: nothing to read hints from "
            "(is the service handed its database URL from {database_url}?)"
        )
    return problems


def _passed(hints: Sequence[HintEntry], expected: str) -> bool:
    confirmed = [h for h in hints if h.confirmation is not None]
    if expected == "race":
        if not confirmed:
            return bool(hints)
        return any(
            h.confirmation is not None and h.confirmation.verdict == "confirmed"
            for h in hints[:TOP]
        )
    return all(h.confirmation is not None and h.confirmation.verdict == "refuted" for h in hints)


def _confirmation(found: Confirmation, schedule_file: Path | None) -> HintConfirmation:
    return HintConfirmation(
        verdict=found.verdict,
        scenario=found.scenario,
        method=found.method,
        said=found.said,
        schedules=found.schedules,
        seconds=round(found.seconds, 3),
        violations=found.violations,
        schedule_file=str(schedule_file) if schedule_file is not None else None,
        timeline=schedule_timeline(found.failure) if found.failure is not None else [],
    )


def _columns(by_table: dict[str, list[str]], locked: Sequence[str] = ()) -> str:
    parts = []
    for table, columns in by_table.items():
        lock = " FOR UPDATE" if table in locked else ""
        parts.append(f"{table}({', '.join(c for c in columns if c)}){lock}")
    return ", ".join(parts) or "-"


def show(console: Console, entry: HintsResult, *, sets: bool = False) -> None:
    """The hints of one variant, ranked, each with its statements, on the terminal; `sets`:
    each transaction's read and write sets first."""
    where = f"{entry.target} x {entry.variant}" if entry.source == "proxy" else entry.target
    source = (
        f"{entry.log_lines} log lines" if entry.source == "log" else "each request once, proxied"
    )
    console.print(
        f"[bold]{escape(where)}[/]: {len(entry.hints)} hint(s) from {entry.transactions} "
        f"transaction(s), {entry.statements} statement(s) ({source}, {entry.seconds:.1f} s)",
        highlight=False,
    )
    for txn in entry.sets if sets else ():
        times = f" x{txn.count}" if txn.count > 1 else ""
        level = f" {txn.isolation.upper()}" if txn.isolation else ""
        console.print(
            f"   {escape(txn.request)} #{txn.transaction}{times}{level}: reads "
            f"{escape(_columns(txn.reads, txn.locked))}; writes {escape(_columns(txn.writes))}",
            highlight=False,
        )
    for hint in entry.hints:
        columns = ", ".join(hint.columns)
        requests = ", ".join(hint.requests[:4]) + (" ..." if len(hint.requests) > 4 else "")
        console.print(
            f" {hint.rank}. [bold]{escape(hint.title)}[/]: {escape('+'.join(hint.tables))} "
            f"({escape(columns)}) in {escape(requests)}",
            highlight=False,
        )
        for evidence in hint.evidence:
            console.print(
                f"      {evidence.role:>6}: {escape(one_line(evidence.sql, SQL_WIDTH))}",
                highlight=False,
            )
        console.print(f"      [dim]why: {escape(hint.why)}[/]", highlight=False)
        console.print(f"      [dim]fix: {escape(hint.fix)}[/]", highlight=False)
        found = hint.confirmation
        if found is not None:
            tone = {"confirmed": "red", "refuted": "green", "unsettled": "yellow"}[found.verdict]
            console.print(
                f"      [{tone}]{found.verdict}[/] by {found.scenario} ({found.method}): "
                f"{escape(found.said)}",
                highlight=False,
            )
            if found.schedule_file:
                console.print(
                    f"      replay: racebench explore --replay {found.schedule_file}",
                    highlight=False,
                )
    if entry.barrier_tables:
        console.print(
            f" barrier_tables = {entry.barrier_tables!r} (the tables the captures write after "
            "their first read)",
            highlight=False,
        )
    for inv in entry.invariants:
        console.print(f" draft invariant {inv.code}: {escape(inv.name)}", highlight=False)
    for problem in entry.problems:
        console.print(f" [bold red]problem:[/] {escape(problem)}", highlight=False)
    must = (
        f"must show a hint{f' confirmed in its top {TOP}' if _confirmed_asked(entry) else ''}"
        if entry.expected == "race"
        else "must show none that stands"
    )
    word = "[green]ok  [/]" if entry.passed else "[bold red]FAIL[/]"
    console.print(f"{word} {escape(where)} ({must})", highlight=False)


def _confirmed_asked(entry: HintsResult) -> bool:
    return any(h.confirmation is not None for h in entry.hints)


# -- racebench target init --------------------------------------------------------------------


def run_init(
    skeleton: str,
    *,
    variant: str | None = None,
    out: Path | None = None,
    database_url: str | None = None,
    workers: int | None = None,
) -> int:
    """Drive the skeleton's service once, draft its barrier tables and invariants, and write a
    target file (`out`, default <skeleton>.init.toml beside it). 0 written; 2 bad input."""
    spec = load_target(skeleton, skeleton=True)
    path = spec.path
    out = out or path.with_name(f"{path.stem}.init.toml")
    if spec.takes_variant and variant is None:
        choices = ", ".join(spec.variants) or "a variant name"
        raise ValueError(
            f"{path}: the service takes {{variant}}: name the build to read with --strategy "
            f"({choices})"
        )
    console = make_console()
    transcript = run_async(drive(spec, variant, database_url=database_url, workers=workers))
    drafts = drafts_of(transcript, spec.payment.captured_sql)
    if not drafts.barrier_tables:
        raise ValueError(
            f"{path}: no capture wrote a table after reading one through racebench's proxy; is "
            "the service handed its database URL from {database_url}?"
        )
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    service_folder = spec.service.cwd or spec.folder
    relative = os.path.relpath(service_folder.resolve(), out.resolve().parent)
    if relative != ".":
        raw.setdefault("service", {})["cwd"] = relative
    how = f"each request once through racebench's proxy ({variant or spec.name})"
    text = target_file(raw, drafts, str(path), how)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    load_target(out)  # what was written reads back as a whole target file
    console.print(
        f"barrier_tables = {list(drafts.barrier_tables)!r}; "
        f"{len(drafts.invariants)} draft invariant(s): "
        f"{', '.join(i.code for i in drafts.invariants) or 'none'}",
        highlight=False,
    )
    console.print(f"wrote {out}; next: racebench race --target {out}", highlight=False)
    return 0


__all__ = ["Confirming", "run_hints", "run_init", "show"]
