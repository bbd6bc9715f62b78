"""Settings of the reference service, read from the environment (docs/contracts.md)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from racebench.razorpay import DEFAULT_KEY_ID, DEFAULT_KEY_SECRET, DEFAULT_WEBHOOK_SECRET

# A capture waits at most this long for a row lock: long enough for any honest capture ahead
# of it (a few ms), short enough that a stuck holder turns into a 503 the sender retries.
LOCK_TIMEOUT_MS = 5_000
# No statement of the capture path legitimately runs longer than this.
STATEMENT_TIMEOUT_MS = 10_000
# A transaction left open by a crashed handler must not hold its locks forever.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000
# Webhook bodies from Razorpay are a few KiB; anything this large is not one of ours.
MAX_BODY_BYTES = 64 * 1024
# How the service's connections show up in pg_stat_activity (the race harness looks for it).
APPLICATION_NAME = "racebench-service"
# Connections per worker process: enough to keep PostgreSQL busy on two cores without
# queueing inside the pool (pgbench peaks at about 16 clients here).
POOL_SIZE = 20
# Requests on one payment that may hold a pooled connection at once (in one worker); more
# wait in line without a connection. A payment whose row lock is held for long (a stuck
# holder) then ties up this many connections, not the pool: /healthz and every other
# payment keep theirs. Honest contention (100 callbacks at once) just takes turns.
MAX_CONNECTIONS_PER_PAYMENT = 4
# How long a request waits for a free pooled connection before it answers 503.
POOL_TIMEOUT_S = 10.0
# Retry-After (seconds) sent with a 503, so that Razorpay's retry comes back soon.
RETRY_AFTER_S = 1


def _racebench(name: str, field: str | None = None) -> AliasChoices:
    """A setting read from RACEBENCH_<NAME>, or passed by its field name."""
    return AliasChoices(f"RACEBENCH_{name.upper()}", field or name)


class Settings(BaseSettings):
    """What the service needs to run; every field can come from the environment.

    DATABASE_URL and the RAZORPAY_* variables match their fields by name; the service's own
    knobs are RACEBENCH_LOCK_STRATEGY, RACEBENCH_DB_POOL_SIZE (connections per worker; not the
    load generator's RACEBENCH_POOL_SIZE of seeded payments), RACEBENCH_LOCK_TIMEOUT_MS and
    RACEBENCH_CREATE_TABLES.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    razorpay_key_id: str = DEFAULT_KEY_ID
    razorpay_key_secret: str = DEFAULT_KEY_SECRET
    razorpay_webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    lock_strategy: str = Field("for_update", validation_alias=_racebench("lock_strategy"))
    pool_size: int = Field(POOL_SIZE, validation_alias=_racebench("db_pool_size", "pool_size"))
    lock_timeout_ms: int = Field(LOCK_TIMEOUT_MS, validation_alias=_racebench("lock_timeout_ms"))
    create_tables: bool = Field(True, validation_alias=_racebench("create_tables"))

    @field_validator("lock_timeout_ms")
    @classmethod
    def _a_real_timeout(cls, value: int) -> int:
        # PostgreSQL reads lock_timeout = 0 as "wait forever", while the per-payment line
        # would wait 0 s: the two would disagree, so a timeout must be one.
        if value < 1:
            raise ValueError(
                f"RACEBENCH_LOCK_TIMEOUT_MS must be at least 1 (ms), not {value}: 0 is "
                "PostgreSQL's 'no timeout', and a capture that can wait forever on a stuck row "
                "lock ties up its connections for good"
            )
        return value
