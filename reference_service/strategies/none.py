"""`none`: read, check, write, as in the write-up's BEFORE. Guards nothing: the canary."""

from __future__ import annotations

from racebench.reference_service.strategies.base import LockStrategy, Safety


class NoLock(LockStrategy):
    name = "none"
    summary = "read, check, write; no lock (the write-up's BEFORE)"
    # BEGIN, read payment, read invoice, one statement for every write, COMMIT
    statements_per_capture = 5
    safety = Safety.UNSAFE


STRATEGY = NoLock
