"""`serializable`: plain reads and writes under SERIALIZABLE; PostgreSQL aborts the loser with
SQLSTATE 40001 and Database.run retries it with a bounded, jittered backoff."""

from __future__ import annotations

from racebench.reference_service.strategies.base import LockStrategy


class Serializable(LockStrategy):
    name = "serializable"
    summary = "SERIALIZABLE isolation; retry on 40001 with jittered backoff"
    isolation_level = "serializable"
    statements_per_capture = 5  # as `none`, under BEGIN ISOLATION LEVEL SERIALIZABLE
    retry_transaction = True


STRATEGY = Serializable
