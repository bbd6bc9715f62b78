"""Database provisioning: fresh databases that vanish, and one-line errors for bad URLs."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
import pytest

from racebench.harness.database import DatabaseError, connect, parse_url, provision, run_sync


async def _database_exists(admin: asyncpg.Connection, name: str) -> bool:
    return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


def test_provision_makes_a_fresh_database_and_drops_it(database_url: str) -> None:
    admin_url = parse_url(database_url).set(database="postgres")
    server_url = admin_url.render_as_string(hide_password=False)

    async def exists(name: str) -> bool:
        conn = await connect(admin_url)
        try:
            return await _database_exists(conn, name)
        finally:
            await conn.close()

    with provision(server_url) as db:
        assert db.name.startswith("racebench_")
        assert run_sync(exists(db.name))
    assert not run_sync(exists(db.name))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql://root@localhost/db", "is not a PostgreSQL URL"),
        ("not a url at all", "is not a URL"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/postgres", "cannot reach PostgreSQL"),
    ],
)
def test_bad_urls_give_one_line_errors_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(DatabaseError) as error, provision(url):
        pass
    message = str(error.value)
    assert expected in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_the_cli_reports_an_unreachable_database_in_one_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "racebench.cli",
            "serve",
            "--database-url",
            "postgresql://postgres:hunter2@127.0.0.1:1/postgres",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:1/postgres" in (
        " ".join(result.stderr.split())
    )
    assert "hunter2" not in result.stderr
