"""Database faults and overload answer 503 with Retry-After, never a 500, and the service
recovers; health and unrelated reads stay responsive while one payment is locked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from racebench.cli import app as cli
from racebench.harness.database import connect, parse_url
from racebench.harness.gateway import Gateway
from racebench.reference_service import db as db_module
from racebench.reference_service.app import create_app
from racebench.reference_service.config import (
    APPLICATION_NAME,
    MAX_CONNECTIONS_PER_PAYMENT,
    Settings,
)
from racebench.reference_service.payments import payment_key
from racebench.reference_service.service import Service
from tests.conftest import effects, new_payment


def assert_unavailable(response: httpx.Response, code: str = "database_unavailable") -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"]["code"] == code


@pytest.fixture
async def unreachable() -> AsyncIterator[httpx.AsyncClient]:
    """The service with a database nobody listens for (port 1 refuses at once)."""
    app = create_app(
        Settings(database_url="postgresql://postgres@127.0.0.1:1/none", create_tables=False)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
    ) as client:
        yield client
    await app.state.service.stop()


async def test_degraded_health_says_when_to_retry(unreachable: httpx.AsyncClient) -> None:
    response = await unreachable.get("/healthz")
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["database"] == "unavailable"


async def test_unreachable_database_is_503(unreachable: httpx.AsyncClient) -> None:
    assert_unavailable(await unreachable.get("/payments/1"))
    assert_unavailable(await unreachable.post("/payments", json={"amount": 100}))


# --- a killed backend -------------------------------------------------------------------

SERVICE_BACKENDS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()
"""


OWN_POOL_SIZE = 4


@pytest.fixture
async def own_service(
    database_url: str, sql: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """A service of this test alone: `own_backends()` are its connections and no other's, so
    killing them hurts no other test's service."""
    others = await service_backends(sql)
    app = create_app(Settings(database_url=database_url, pool_size=OWN_POOL_SIZE))
    service: Service = app.state.service
    await service.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
    ) as client:
        client.own_backends = lambda: _new_backends(sql, others)  # type: ignore[attr-defined]
        yield client
    await service.stop()


async def service_backends(sql: asyncpg.Connection) -> set[int]:
    return {r["pid"] for r in await sql.fetch(SERVICE_BACKENDS, APPLICATION_NAME)}


async def _new_backends(sql: asyncpg.Connection, others: set[int]) -> list[int]:
    return sorted(await service_backends(sql) - others)


@pytest.fixture
async def other_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(parse_url(database_url))
    yield conn
    await conn.close()


async def terminate(sql: asyncpg.Connection, pids: list[int]) -> None:
    """pg_terminate_backend, then wait (on the server, not on a clock) until they are gone."""
    await sql.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    while await sql.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
    ):
        pass


def assert_served_or_unavailable(response: httpx.Response) -> bool:
    """200, or 503 with Retry-After; never a 500. True if it was served."""
    if response.status_code == 200:
        return True
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    body = response.json()
    assert body.get("database") == "unavailable" or (
        body["error"]["code"] == "database_unavailable"
    ), body
    return False


async def test_backends_killed_between_requests_are_503_never_500(
    own_service: httpx.AsyncClient, sql: asyncpg.Connection
) -> None:
    # Killing the pooled, idle connection after each request: the next request meets it dead
    # in one of several shapes (ConnectionDoesNotExistError, and asyncpg's InternalClientError
    # "cannot switch to state 15; another operation (2) is in progress", which was a 500).
    payment = await new_payment(own_service)
    for attempt in range(30):
        path = f"/payments/{payment['id']}" if attempt % 2 else "/healthz"
        assert_served_or_unavailable(await own_service.get(path))
        await terminate(sql, await own_service.own_backends())  # type: ignore[attr-defined]
    # Recovery: the pool opens new connections; nothing stays broken.
    for path in ("/healthz", f"/payments/{payment['id']}", f"/invoices/{payment['invoice_id']}"):
        # Each pooled connection killed above can fail one request, then it is replaced.
        for _ in range(OWN_POOL_SIZE + 1):
            if assert_served_or_unavailable(await own_service.get(path)):
                break
        else:
            pytest.fail(f"{path} did not recover")


async def test_backend_killed_mid_request_is_503_then_recovers(
    own_service: httpx.AsyncClient,
    other_conn: asyncpg.Connection,
    sql: asyncpg.Connection,
    gateway: Gateway,
) -> None:
    payment = await new_payment(own_service)
    body = gateway.checkout(payment["id"], payment["razorpay_order_id"]).body()
    holder = other_conn.get_server_pid()
    async with other_conn.transaction():
        await other_conn.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", payment["id"])
        verify = asyncio.create_task(own_service.post("/payments/verify", json=body))
        # The service's backend is now (or soon) waiting for our row lock: find it there.
        while not (waiter := await blocked_by(sql, holder)):
            assert not verify.done(), verify.result().text
        await terminate(sql, waiter)
        response = await verify
    assert_unavailable(response)
    assert await effects(sql, payment["id"]) == {
        "allocations": 0,
        "receipts": 0,
        "captured_events": 0,
    }
    # The retry the client was told to make succeeds.
    for _ in range(2):
        retried = await own_service.post("/payments/verify", json=body)
        if assert_served_or_unavailable(retried):
            break
    assert retried.json()["replayed"] is False
    assert (await own_service.get("/healthz")).status_code == 200


async def blocked_by(sql: asyncpg.Connection, holder: int) -> list[int]:
    rows = await sql.fetch(
        "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", holder
    )
    return [r["pid"] for r in rows]


# --- one locked payment -----------------------------------------------------------------

POOL = 8
VERIFIES = 3 * POOL  # requests on the one payment, WEBHOOKS of them webhooks
WEBHOOKS = POOL


@pytest.fixture
async def small_pool(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Service]]:
    # A long lock timeout: the test, not the timeout, decides when the lock goes away.
    settings = Settings(database_url=database_url, pool_size=POOL, lock_timeout_ms=60_000)
    app = create_app(settings)
    service: Service = app.state.service
    await service.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
    ) as client:
        yield client, service
    await service.stop()


async def test_one_locked_payment_leaves_health_and_other_reads_alone(
    small_pool: tuple[httpx.AsyncClient, Service],
    other_conn: asyncpg.Connection,
    sql: asyncpg.Connection,
    gateway: Gateway,
) -> None:
    api, service = small_pool
    locked, other = await new_payment(api), await new_payment(api)
    order_id = locked["razorpay_order_id"]
    body = gateway.checkout(locked["id"], order_id).body()
    async with other_conn.transaction():
        await other_conn.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", locked["id"])
        # Both paths on the one payment: checkout callbacks and webhook deliveries.
        verifies = [
            asyncio.create_task(api.post("/payments/verify", json=body))
            for _ in range(VERIFIES - WEBHOOKS)
        ]
        for _ in range(WEBHOOKS):
            delivery = gateway.event("payment.captured", order_id=order_id, amount=locked["amount"])
            verifies.append(
                asyncio.create_task(
                    api.post(
                        "/webhooks/razorpay", content=delivery.body, headers=delivery.headers()
                    )
                )
            )
        # Every request has arrived (holds or waits for a turn, in one line whatever its
        # path), and those that hold one are waiting for our row lock in PostgreSQL.
        key = payment_key(order_id)
        while not (
            len(await lock_waiters(sql)) >= min(MAX_CONNECTIONS_PER_PAYMENT, POOL)
            and service.db.per_payment.queued(key) == VERIFIES
        ):
            assert not any(v.done() for v in verifies)
        # While the lock is still held (we hold it), health and an unrelated read answer.
        # "Promptly" means before any verify gave up: had they taken the pool, health would
        # get a connection only when a verify times out and hands one back.
        health = await api.get("/healthz")
        assert health.status_code == 200, health.text
        assert not any(v.done() for v in verifies)
        read = await api.get(f"/payments/{other['id']}")
        assert read.status_code == 200, read.text
        assert not any(v.done() for v in verifies)
        assert len(await lock_waiters(sql)) == MAX_CONNECTIONS_PER_PAYMENT
    # Released: every request goes through; exactly one captured, the rest are replays.
    answers = await asyncio.gather(*verifies)
    assert [a.status_code for a in answers] == [200] * VERIFIES, [a.text for a in answers]
    assert [a.json()["replayed"] for a in answers[: VERIFIES - WEBHOOKS]].count(False) <= 1
    assert (await api.get(f"/payments/{locked['id']}")).json()["status"] == "captured"
    assert await effects(sql, locked["id"]) == {
        "allocations": 1,
        "receipts": 1,
        "captured_events": 1,
    }


async def lock_waiters(sql: asyncpg.Connection) -> list[int]:
    """Backends of this database waiting for a lock (behind us, or behind one another)."""
    rows = await sql.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return [r["pid"] for r in rows]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_lock_timeout_of_zero_is_refused_at_startup(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads 0 as "no timeout" while the per-payment line would wait 0 s: the
    service refuses to start with it, saying why (racebench serve exits 2)."""
    monkeypatch.setenv("RACEBENCH_LOCK_TIMEOUT_MS", value)
    with pytest.raises(ValueError, match="RACEBENCH_LOCK_TIMEOUT_MS must be at least 1"):
        Settings()
    done = CliRunner().invoke(cli, ["serve", "--port", "1"])
    assert done.exit_code == 2
    assert "RACEBENCH_LOCK_TIMEOUT_MS must be at least 1" in done.output


async def test_a_database_silent_at_pool_creation_is_unavailable_not_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that accepts the connection and never answers (a database restarting): the
    pool's first connect times out, and that is 503 database_unavailable with Retry-After,
    not "busy" (no free connection), which it used to say."""
    monkeypatch.setattr(db_module, "CONNECT_TIMEOUT_S", 0.2)
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/none", create_tables=False
        )
        app = create_app(settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://racebench.test"
        ) as client:
            response = await client.post("/payments", json={"amount": 100})
        assert_unavailable(response)
        assert "TimeoutError" in response.json()["error"]["message"]
    finally:
        done.set()
        listener.close()
        await listener.wait_closed()
