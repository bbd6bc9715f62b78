"""The transactions of a PostgreSQL statement log, backend by backend (`racebench hints --log`).

`read_log_file(path, prefix)` reads a server log in PostgreSQL's plain `stderr` format and gives
back every transaction it saw: each backend's statements, in log order, cut at BEGIN and COMMIT
(or ROLLBACK), one transaction per statement outside an explicit BEGIN (autocommit).

What the server must be set to (postgresql.conf, or ALTER SYSTEM, then pg_reload_conf())::

    log_statement = 'all'              # every statement, as it starts (or, instead:
                                       #   log_min_duration_statement = 0, each as it ends)
    log_line_prefix = '%m [%p] %q%a '  # RECOMMENDED_PREFIX; pass the server's value as `prefix`
    lc_messages = 'C'                  # the severities are read in English (LOG:, ERROR:)
    log_destination = 'stderr'         # the default; csvlog and jsonlog are not read
    log_min_error_statement = 'error'  # the default: an ERROR's STATEMENT line (see below)

- `log_line_prefix` may be any prefix with `%p` (the process id) or `%c` (the session id, which
  carries the pid): pass exactly the server's value (`SHOW log_line_prefix`). The default,
  DEFAULT_PREFIX, is PostgreSQL's own default ('%m [%p] '); Debian's packages set
  '%m [%p] %q%u@%d '. With `%a` each transaction carries the client's application_name; with
  `%c` a backend whose pid the kernel hands to a later connection is not taken for the earlier
  one.
- With both `log_statement = 'all'` and `log_min_duration_statement = 0` nothing is counted
  twice: PostgreSQL then prints the text once (`statement:` or `execute ...:`) and the duration
  line without it. `log_min_duration_statement` above 0, `log_statement = 'mod'` or sampling
  (`log_statement_sample_rate`, `log_transaction_sample_rate`) leave statements out, and the
  analysis would not see them.
- `logging_collector = on` or off both work (off: every backend appends to the server's stderr
  file in one write per message; on: the collector puts each message back together).

What is read: `LOG:  statement: <sql>` (simple Query protocol), `LOG:  execute <name>: <sql>`
(extended protocol: asyncpg, psycopg 3, JDBC, node-postgres), the same two after
`duration: ... ms  ` and the lines that continue them (PostgreSQL starts each further line of a
message with a TAB and no prefix). An `ERROR:` fails the backend's transaction in progress, or
else the statement just before it, when the ERROR's `STATEMENT:` line repeats that statement's
text (not so for a statement that failed before it was logged, e.g. a syntax error). Anything
else is skipped: parameters (`DETAIL:`), `parse`/`bind` durations, checkpoints, connections.
SQL text is kept as logged (parameters stay $1, $2 ...) and is not parsed here: only each
statement's first keyword is read, to cut transactions (a simple Query holding several
statements stays one string, for pglast to split later; PostgreSQL's own scanner, through
pglast, finds the first keyword of each of its statements).

Limits (what the log does not show): an extended-protocol pipeline with no BEGIN (asyncpg's
`executemany` outside a transaction) runs several statements in one implicit transaction and
reads here as one transaction each; a statement named by SQL `EXECUTE name` is read as that
text, not the prepared statement's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

from pglast import split as split_statements
from pglast.parser import ParseError

DEFAULT_PREFIX: Final = "%m [%p] "  # PostgreSQL's own default log_line_prefix (since 10)
RECOMMENDED_PREFIX: Final = "%m [%p] %q%a "  # adds the client's application_name

# Prefixes to name in an error when the one given matches nothing: PostgreSQL's default,
# Debian's and Ubuntu's packages, and ours.
KNOWN_PREFIXES: Final = (DEFAULT_PREFIX, "%m [%p] %q%u@%d ", RECOMMENDED_PREFIX)

_TIMESTAMP = r"\d+-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? ?\S*"  # %t %m %s: '... 05:47:04.710 UTC'

# log_line_prefix's escapes (PostgreSQL's elog.c, log_line_prefix()) as regular expressions
# over the prefix. Free text (names, hosts) is matched lazily up to what follows it.
_ESCAPES: Final[dict[str, str]] = {
    "a": r"(?P<application>.*?)",  # application_name ('[unknown]' when the client set none)
    "u": r".*?",  # user
    "d": r".*?",  # database
    "r": r".*?",  # remote host(port)
    "h": r".*?",  # remote host
    "L": r".*?",  # local address
    "b": r".*?",  # backend type ('client backend')
    "i": r".*?",  # command tag
    "p": r"(?P<pid>\d+)",
    "P": r"\d*",  # parallel group leader's pid
    "t": _TIMESTAMP,
    "m": _TIMESTAMP,
    "s": _TIMESTAMP,  # session start
    "n": r"\d+\.\d+",  # epoch with milliseconds
    "e": r"[0-9A-Z]{5}",  # SQLSTATE
    "c": r"(?P<session>[0-9a-f]+\.[0-9a-f]+)",  # session id: start time and pid, in hex
    "l": r"\d+",  # the session's line number
    "v": r"(?:-?\d+/\d+)?",  # virtual transaction id
    "x": r"\d+",  # transaction id (0 when none)
    "Q": r"-?\d+",  # query id
    "%": "%",
}
# After the prefix: the severity, two spaces, and the SQLSTATE under log_error_verbosity=verbose.
_SEVERITY = r"(?P<severity>[A-Z]+):  (?:[0-9A-Z]{5}: )?"

# Severities that only add to the message before them (ERROR's detail, its STATEMENT).
_ADDENDA: Final = frozenset({"DETAIL", "HINT", "CONTEXT", "QUERY", "LOCATION"})
_ABORTS: Final = frozenset({"ERROR", "FATAL", "PANIC"})

# What a statement does to its backend's transaction, by its first keyword (a token check).
_BEGIN, _COMMIT, _ROLLBACK, _ROLLBACK_TO = range(4)
_CONTROL_WORDS: Final = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "prepare"}
)
_WORD = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True)
class LoggedTransaction:
    """One transaction of one backend, as the log shows it."""

    pid: int  # the backend's process id (%p, or the pid inside %c)
    index: int  # the n-th transaction of that pid in the log, from 0
    statements: tuple[str, ...]  # SQL text as logged ($1, $2 ... stay), BEGIN and COMMIT kept
    application: str | None  # %a at its first statement, when the prefix has %a
    failed: bool  # ended in ROLLBACK, or an ERROR was logged in it (and not rolled back to a
    # savepoint), or its backend ended inside it
    line: int = field(default=0, compare=False)  # the log line (from 1) of its first statement


class LogFormatError(ValueError):
    """The log (or the prefix) is not what `read_log` expects; the message says what was."""

    def __init__(self, message: str, line_number: int | None = None) -> None:
        super().__init__(message if line_number is None else f"line {line_number}: {message}")
        self.line_number = line_number


def read_log_file(path: Path, prefix: str = DEFAULT_PREFIX) -> list[LoggedTransaction]:
    """`read_log` over a log file, streamed line by line."""
    # newline="\n": a statement may hold a bare \r, which must not end a line here.
    with path.open(encoding="utf-8", errors="replace", newline="\n") as lines:
        return read_log(lines, prefix)


def read_log(lines: Iterable[str], prefix: str = DEFAULT_PREFIX) -> list[LoggedTransaction]:
    """Every transaction in `lines` (a log's lines, each with or without its "\\n"; split on
    "\\n" only), ordered by its first statement's line.

    `prefix` is the server's log_line_prefix. LogFormatError if it has neither %p nor %c, or if
    no line matches it and nothing was found.
    """
    return _Reader(prefix).read(lines)


# The reader keeps one _Transaction per transaction found (the output) and, per backend, only
# the transaction in progress and the one an ERROR may yet be for.

# A statement line that may yet be continued: a statement as it starts (log_statement), one that
# has ended (a duration line), or the STATEMENT line of an ERROR.
_STARTED, _ENDED, _ERROR_STATEMENT = range(3)
_Pending = tuple[int, int | str, str | None, int, int]  # pid, backend, application, line, kind


class _Transaction:
    __slots__ = ("application", "errored", "index", "line", "pid", "rolled_back", "statements")

    def __init__(self, pid: int, index: int, application: str | None, line: int) -> None:
        self.pid, self.index, self.application, self.line = pid, index, application, line
        self.statements: list[str] = []
        self.errored = False  # an ERROR since its start or its last ROLLBACK TO
        self.rolled_back = False

    def freeze(self) -> LoggedTransaction:
        failed = self.errored or self.rolled_back
        statements = tuple(self.statements)
        return LoggedTransaction(
            self.pid, self.index, statements, self.application, failed, self.line
        )


class _Backend:
    __slots__ = ("awaiting", "chained", "last", "open")

    def __init__(self) -> None:
        self.open: _Transaction | None = None  # an explicit transaction in progress
        self.chained = False  # COMMIT AND CHAIN: the next statement opens a transaction block
        # The transaction its last statement closed (autocommit, or a COMMIT): an ERROR right
        # after it is its own, if the ERROR's STATEMENT line has the same text.
        self.last: _Transaction | None = None
        self.awaiting: _Transaction | None = None  # `last`, after an ERROR, until its STATEMENT


class _Reader:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pattern = _line_pattern(prefix)
        self.found: list[_Transaction] = []
        self.backends: dict[int | str, _Backend] = {}
        self.counts: dict[int, int] = {}  # transactions so far, by pid
        self.texts: dict[str, str] = {}  # one string object per distinct statement text

    def read(self, lines: Iterable[str]) -> list[LoggedTransaction]:
        match = self.pattern.match
        first_unmatched: tuple[int, str] | None = None
        # The statement (or an ERROR's STATEMENT) whose continuation lines may follow.
        pending: list[str] | None = None
        pending_at: _Pending | None = None
        for number, raw in enumerate(lines, 1):
            line = raw.rstrip("\r\n")
            if line[:1] == "\t":  # the next line of the message above
                if pending is not None:
                    pending.append(line[1:])
                continue
            if pending is not None:
                self._flush(pending, pending_at)
                pending = pending_at = None
            m = match(line)
            if m is None:
                if first_unmatched is None and line.strip():
                    first_unmatched = number, line
                continue
            pid_text = m["pid"]
            session = m["session"]
            if session is not None:
                key: int | str = session
                pid = int(pid_text) if pid_text is not None else int(session.partition(".")[2], 16)
            elif pid_text is not None:
                key = pid = int(pid_text)
            else:
                continue  # a process outside any session, cut at %q
            severity = m["severity"]
            message = line[m.end() :]
            backend = self.backends.get(key)
            if backend is None:
                backend = self.backends[key] = _Backend()
            if backend.awaiting is not None and severity != "STATEMENT":
                if severity in _ADDENDA:
                    continue
                backend.awaiting.errored = True  # no STATEMENT line: the ERROR was its own
                backend.awaiting = None
            if severity == "LOG":
                sql = _statement(message)
                if sql is not None:
                    kind = _ENDED if message.startswith("duration: ") else _STARTED
                    pending = [sql]
                    pending_at = (pid, key, m["application"], number, kind)
                elif message.startswith("duration: "):
                    backend.last = None  # the statement before it ended well
                elif message.startswith(("disconnection: ", "connection received: ")):
                    self._end_session(backend)
            elif severity == "STATEMENT":
                if backend.awaiting is not None:
                    pending = [message]
                    pending_at = (pid, key, None, number, _ERROR_STATEMENT)
            elif severity in _ABORTS:
                if backend.open is not None:
                    backend.open.errored = True
                elif backend.last is not None:
                    backend.awaiting, backend.last = backend.last, None
                if severity != "ERROR":  # FATAL, PANIC: the backend is gone
                    self._end_session(backend)
        if pending is not None:
            self._flush(pending, pending_at)
        for backend in self.backends.values():
            if backend.awaiting is not None:
                backend.awaiting.errored = True
        if not self.found and first_unmatched is not None:
            raise _unmatched(self.prefix, *first_unmatched)
        return [transaction.freeze() for transaction in self.found]

    def _flush(self, parts: list[str], at: _Pending | None) -> None:
        assert at is not None
        pid, key, application, number, kind = at
        text = parts[0] if len(parts) == 1 else "\n".join(parts)
        backend = self.backends[key]
        if kind == _ERROR_STATEMENT:
            awaiting, backend.awaiting = backend.awaiting, None
            if awaiting is not None and awaiting.statements[-1] == text:
                awaiting.errored = True
            return
        text = self.texts.setdefault(text, text)
        transaction = backend.open
        if transaction is None:
            index = self.counts.get(pid, 0)
            self.counts[pid] = index + 1
            transaction = _Transaction(pid, index, application, number)
            self.found.append(transaction)
        transaction.statements.append(text)
        in_block, closed = backend.open is not None or backend.chained, False
        for effect in _effects(text):
            if effect == _BEGIN:
                in_block = True
            elif effect == _ROLLBACK_TO:
                transaction.errored = False
            else:
                in_block, closed = False, True
                transaction.rolled_back |= effect == _ROLLBACK
        # Closed, then opened again ('COMMIT AND CHAIN', 'COMMIT; BEGIN'): the text stays with
        # the transaction it closed, the next statement starts the new one.
        backend.chained = in_block and closed
        backend.open = transaction if in_block and not closed else None
        # An ERROR after a statement logged as it ended (a duration line) is another one's.
        backend.last = None if backend.open is not None or kind == _ENDED else transaction

    def _end_session(self, backend: _Backend) -> None:
        """The backend exits (or its pid starts a new session): what it had open rolled back."""
        if backend.open is not None:
            backend.open.errored = True
            backend.open = None
        backend.last, backend.chained = None, False


def _statement(message: str) -> str | None:
    """The SQL of a LOG message that logs a statement (once), else None."""
    if message.startswith("statement: "):
        return message[11:]
    if message.startswith("duration: "):
        # 'duration: 0.1 ms  statement: ...' when log_statement did not log it already;
        # 'duration: 0.1 ms' alone when it did.
        cut = message.find(" ms  ")
        if cut < 0:
            return None
        message = message[cut + 5 :]
        if message.startswith("statement: "):
            return message[11:]
    # 'execute <unnamed>: ...', 'execute S_1: ...', 'execute S_1/C_2: ...' (a named portal);
    # 'execute fetch from ...' runs a portal again, and 'parse' / 'bind' are not executions.
    if message.startswith("execute ") and not message.startswith("execute fetch from "):
        colon = message.find(": ", 8)
        if colon > 0:
            return message[colon + 2 :]
    return None


def _effects(sql: str) -> list[int]:
    """What `sql` does to its transaction: BEGIN, COMMIT, ROLLBACK ..., in order; [] for any
    other statement. A multi-statement string ('BEGIN; ...; COMMIT') is cut by PostgreSQL's
    own scanner (pglast), and each statement's first keyword read."""
    body, semicolon, rest = sql.partition(";")
    if not semicolon or not rest.strip():
        return _effect(body)
    try:
        pieces = split_statements(sql, with_parser=False)
    except ParseError:  # an unterminated quote or comment: PostgreSQL would have refused it
        return _effect(body)
    return [effect for piece in pieces for effect in _effect(piece)]


def _effect(statement: str) -> list[int]:
    words = _leading_words(statement)
    if not words or words[0] not in _CONTROL_WORDS:
        return []
    first, second = words[0], words[1] if len(words) > 1 else ""
    chained = second != "prepared" and words[-2:] == ["and", "chain"]  # COMMIT AND CHAIN
    if first in ("begin", "start"):
        return [_BEGIN]
    if first in ("commit", "end"):  # COMMIT PREPARED too: it ends nothing of the session's
        return [_COMMIT, _BEGIN] if chained else [_COMMIT]
    if first in ("rollback", "abort"):
        if "to" in words[1:3]:  # ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name
            return [_ROLLBACK_TO]
        return [_ROLLBACK, _BEGIN] if chained else [_ROLLBACK]
    if second == "transaction":  # PREPARE TRANSACTION: the session's transaction is done
        return [_COMMIT]
    return []  # PREPARE name AS ...


def _leading_words(statement: str) -> list[str]:
    """The first few words of a statement, lower case, past any leading comments."""
    text = statement.lstrip()
    while text.startswith(("--", "/*")):
        if text[1] == "-":
            end = text.find("\n")
            text = "" if end < 0 else text[end + 1 :].lstrip()
            continue
        depth, at = 1, 2  # block comments nest in PostgreSQL
        while depth:
            opening, closing = text.find("/*", at), text.find("*/", at)
            if closing < 0:
                return []
            if 0 <= opening < closing:
                depth, at = depth + 1, opening + 2
            else:
                depth, at = depth - 1, closing + 2
        text = text[at:].lstrip()
    first = _WORD.match(text)
    if first is None or first[0].lower() not in _CONTROL_WORDS:
        return []
    return [word.lower() for word in _WORD.findall(text, 0, 80)[:5]]


@lru_cache(maxsize=16)
def _line_pattern(prefix: str) -> re.Pattern[str]:
    """A regular expression over a log line's prefix and severity, with the groups pid,
    session, application (each None when the prefix lacks it) and severity."""
    parts: list[str] = []
    named: set[str] = set()
    cut = None  # where %q is: the rest is missing from lines of processes outside a session
    at = 0
    while at < len(prefix):
        char = prefix[at]
        if char != "%":
            parts.append(re.escape(char))
            at += 1
            continue
        escape = re.match(r"%(-?\d*)(.?)", prefix[at:])
        assert escape is not None
        padding, letter = escape[1], escape[2]
        at += escape.end()
        if letter == "q":
            if cut is None:
                cut = len(parts)
            continue
        if letter == "":  # a '%' at the end, or '%-5' with nothing after: PostgreSQL ignores it
            break
        regex = _ESCAPES.get(letter, "")  # an unknown escape prints nothing
        name = re.match(r"\(\?P<(\w+)>", regex)
        if name is not None:
            if name[1] in named:
                regex = "(?:" + regex[name.end() :]
            named.add(name[1])
        if padding not in ("", "-"):
            regex = regex + " *" if padding.startswith("-") else " *" + regex
        parts.append(regex)
    if "pid" not in named and "session" not in named:
        raise LogFormatError(
            f"log_line_prefix {prefix!r} has neither %p (process id) nor %c (session id), so "
            f"the backends' statements cannot be told apart; set log_line_prefix to one that "
            f"has, e.g. {RECOMMENDED_PREFIX!r}, and pass it"
        )
    names = {"pid", "session", "application"} - named
    head = "".join(parts if cut is None else parts[:cut])
    tail = "" if cut is None else "(?:" + "".join(parts[cut:]) + ")?"
    # Groups the prefix lacks exist all the same (never matching), so m["pid"] never raises.
    absent = "".join(f"(?P<{n}>(?!))?" for n in sorted(names))
    return re.compile(head + tail + absent + _SEVERITY)


def _unmatched(prefix: str, number: int, line: str) -> LogFormatError:
    hint = ""
    for known in KNOWN_PREFIXES:
        if known != prefix and _line_pattern(known).match(line):
            hint = f"; it looks like log_line_prefix {known!r}"
            break
    shown = line if len(line) <= 120 else line[:117] + "..."
    return LogFormatError(
        f"expected a PostgreSQL log line: log_line_prefix {prefix!r}, then a severity such as "
        f"'LOG:  statement: ...' (log_statement = 'all', lc_messages = 'C'), "
        f"but found {shown!r}{hint}; no transaction was read, pass the server's log_line_prefix",
        number,
    )
