"""Settings of the reference service, read from the environment (DESIGN.md, configuration)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Fixed test credentials: the service and the gateway simulator share them by default, and
# `racebench serve` prints them so that a hand-written client can sign requests.
DEFAULT_KEY_ID = "rzp_test_racebench"
DEFAULT_KEY_SECRET = "racebench_test_key_secret"
DEFAULT_WEBHOOK_SECRET = "racebench_test_webhook_secret"

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
# How long a request waits for a free pooled connection before it answers 503.
POOL_TIMEOUT_S = 10.0
# Retry-After (seconds) sent with a 503, so that Razorpay's retry comes back soon.
RETRY_AFTER_S = 1


class Settings(BaseSettings):
    """What the service needs to run; every field can come from the environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )
    razorpay_key_id: str = Field(
        default=DEFAULT_KEY_ID, validation_alias=AliasChoices("RAZORPAY_KEY_ID", "razorpay_key_id")
    )
    razorpay_key_secret: str = Field(
        default=DEFAULT_KEY_SECRET,
        validation_alias=AliasChoices("RAZORPAY_KEY_SECRET", "razorpay_key_secret"),
    )
    razorpay_webhook_secret: str = Field(
        default=DEFAULT_WEBHOOK_SECRET,
        validation_alias=AliasChoices("RAZORPAY_WEBHOOK_SECRET", "razorpay_webhook_secret"),
    )
    lock_strategy: str = Field(
        default="for_update",
        validation_alias=AliasChoices("RACEBENCH_LOCK_STRATEGY", "lock_strategy"),
    )
    pool_size: int = Field(
        default=POOL_SIZE, validation_alias=AliasChoices("RACEBENCH_POOL_SIZE", "pool_size")
    )
    lock_timeout_ms: int = Field(
        default=LOCK_TIMEOUT_MS,
        validation_alias=AliasChoices("RACEBENCH_LOCK_TIMEOUT_MS", "lock_timeout_ms"),
    )
    create_tables: bool = Field(
        default=True,
        validation_alias=AliasChoices("RACEBENCH_CREATE_TABLES", "create_tables"),
    )
