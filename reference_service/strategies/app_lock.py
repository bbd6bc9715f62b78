"""`app_lock`: an asyncio.Lock per payment (and per invoice) inside this process.

Safe while one process serves every request; a second uvicorn worker has its own locks, so the
race comes back. The harness proves both halves.
"""

from __future__ import annotations

import asyncio

from racebench.reference_service.db import Tx
from racebench.reference_service.strategies.base import LockStrategy, PaymentRow, Safety


class _KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], tuple[asyncio.Lock, list[int]]] = {}

    async def hold_until_end(self, tx: Tx, key: tuple[str, int]) -> None:
        lock, users = self._entries.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key, users)
            raise

        def release() -> None:
            lock.release()
            self._forget(key, users)

        # Released after the commit: the next holder must see this capture's writes.
        tx.after_end.callback(release)

    def _forget(self, key: tuple[str, int], users: list[int]) -> None:
        users[0] -= 1
        if users[0] == 0:
            del self._entries[key]


class AppLock(LockStrategy):
    name = "app_lock"
    summary = "in-process asyncio.Lock per payment, then per invoice"
    statements_per_capture = 5  # as `none`; its locks live in the process
    safety = Safety.SINGLE_PROCESS

    def __init__(self) -> None:
        self._locks = _KeyedLocks()

    async def read_payment(self, tx: Tx, payment_id: int) -> PaymentRow | None:
        await self._locks.hold_until_end(tx, ("payment", payment_id))
        return await super().read_payment(tx, payment_id)

    async def read_invoice(self, tx: Tx, invoice_id: int) -> tuple[int, int]:
        await self._locks.hold_until_end(tx, ("invoice", invoice_id))
        return await super().read_invoice(tx, invoice_id)


STRATEGY = AppLock
