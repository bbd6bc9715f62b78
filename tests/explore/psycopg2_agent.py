"""psycopg2, driven by tests/explore/drivers.py through racebench's proxy, in a child process
like the node and JDBC agents: psycopg2's cancel() calls libpq's PQcancel without releasing
the GIL, which would freeze a proxy running in the test's own process.

One command a line on stdin (id, op, args; tab-separated, each field percent-encoded), one
answer a line on stdout (id, "ok", fields... or id, "err", sqlstate, message). Commands run in
order on a worker thread, except "cancel", which cancels the running one at once.
"""

from __future__ import annotations

import io
import queue
import re
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import psycopg2
import psycopg2.extras

conn: Any = None
write_lock = threading.Lock()


def answer(id_: str, fields: list[object]) -> None:
    line = "\t".join([id_, *(quote(str(f), safe="") for f in fields)])
    with write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def percent_s(sql: str) -> str:
    return re.sub(r"\$\d+", "%s", sql)


def ints(run: str) -> list[int]:
    return [int(v) for v in run.split(",")]


def execute(sql: str, params: list[int] | None = None) -> list[object]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        return [cur.rowcount, *(",".join(map(str, row)) for row in rows)]


def connect(url: str, app: str, mode: str) -> list[object]:
    global conn
    conn = psycopg2.connect(url, application_name=app)
    conn.autocommit = True
    return execute("SELECT pg_backend_pid()")[1:]


def simple(sql: str) -> list[object]:
    return execute(sql)[:1]


def query(sql: str, *params: str) -> list[object]:
    # psycopg2 binds on the client: a simple Query with the values in its text
    return execute(percent_s(sql), [int(p) for p in params])


def prepared(sql: str, *runs: str) -> list[object]:
    # no protocol-level prepared statements: SQL's PREPARE and EXECUTE
    execute(f"PREPARE racebench_prepared AS {sql}")
    counts = []
    for run in runs:
        values = ints(run)
        marks = ", ".join(["%s"] * len(values))
        counts.append(execute(f"EXECUTE racebench_prepared({marks})", values)[0])
    execute("DEALLOCATE racebench_prepared")
    return counts


def batch(sql: str, *runs: str) -> list[object]:
    with conn.cursor() as cur:  # execute_batch: the statements joined into one Query
        psycopg2.extras.execute_batch(cur, percent_s(sql), [ints(r) for r in runs])
    return []


def begin() -> list[object]:
    conn.autocommit = False  # psycopg2 sends BEGIN before the next statement
    return []


def commit() -> list[object]:
    conn.commit()
    conn.autocommit = True
    return []


def rollback() -> list[object]:
    conn.rollback()
    conn.autocommit = True
    return []


def copy_in(sql: str, data: str) -> list[object]:
    with conn.cursor() as cur:
        cur.copy_expert(sql, io.StringIO(data))
        return [cur.rowcount]


def copy_out(sql: str) -> list[object]:
    out = io.StringIO()
    with conn.cursor() as cur:
        cur.copy_expert(sql, out)
    return [out.getvalue()]


def close() -> list[object]:
    conn.close()
    return []


OPS: dict[str, Callable[..., list[object]]] = {
    f.__name__: f
    for f in (connect, simple, query, prepared, batch, begin, commit, rollback, copy_in, copy_out)
}
OPS["close"] = close


def run(op: str, args: list[str]) -> list[object]:
    try:
        return ["ok", *OPS[op](*args)]
    except psycopg2.Error as error:
        return ["err", error.pgcode or "", str(error)]
    except Exception as error:
        return ["err", "", repr(error)]


def cancel() -> list[object]:
    if conn is None:
        return ["err", "", "not connected"]
    try:
        conn.cancel()
    except psycopg2.Error as error:
        return ["err", error.pgcode or "", str(error)]
    return ["ok"]


def main() -> None:
    jobs: queue.Queue[tuple[str, str, list[str]] | None] = queue.Queue()

    def worker() -> None:
        while (job := jobs.get()) is not None:
            id_, op, args = job
            answer(id_, run(op, args))

    thread = threading.Thread(target=worker)
    thread.start()
    for line in sys.stdin:
        id_, *fields = line.rstrip("\n").split("\t")
        op, *args = [unquote(f) for f in fields]
        if op == "cancel":
            answer(id_, cancel())
        else:
            jobs.put((id_, op, args))
    jobs.put(None)
    thread.join()


if __name__ == "__main__":
    main()
