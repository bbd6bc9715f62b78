"""A strategy with a known cost, for the A/B test only: for_update that sleeps 5 ms inside its
transaction before it writes (racebench bench --strategies
for_update,tests.loadtests.slow_strategy:SlowForUpdate)."""

from __future__ import annotations

import asyncio

from racebench.reference_service.db import Tx
from racebench.reference_service.models import InvoiceStatus
from racebench.reference_service.strategies.base import Capture, PaymentRow
from racebench.reference_service.strategies.for_update import ForUpdate

SLEEP_S = 0.005


class SlowForUpdate(ForUpdate):
    name = "slow_for_update"
    summary = "for_update, plus 5 ms asleep inside the transaction"

    async def write_capture(
        self, tx: Tx, payment: PaymentRow, capture: Capture
    ) -> InvoiceStatus | None:
        await asyncio.sleep(SLEEP_S)
        return await super().write_capture(tx, payment, capture)
