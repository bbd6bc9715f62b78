"""The parts one running service holds: database, lock strategy, signature verifier."""

from __future__ import annotations

from dataclasses import dataclass

from racebench.reference_service.config import Settings
from racebench.reference_service.db import Database
from racebench.reference_service.signatures import SignatureVerifier
from racebench.reference_service.strategies import LockStrategy, get_strategy


@dataclass
class Service:
    settings: Settings
    db: Database
    strategy: LockStrategy
    verifier: SignatureVerifier

    @classmethod
    def from_settings(cls, settings: Settings, strategy: LockStrategy | None = None) -> Service:
        """Build everything without connecting: connections open on first use."""
        return cls(
            settings=settings,
            db=Database(
                settings.database_url,
                pool_size=settings.pool_size,
                lock_timeout_ms=settings.lock_timeout_ms,
            ),
            strategy=strategy or get_strategy(settings.lock_strategy),
            verifier=SignatureVerifier(
                settings.razorpay_key_id,
                settings.razorpay_key_secret,
                settings.razorpay_webhook_secret,
            ),
        )

    async def start(self) -> None:
        if self.settings.create_tables:
            await self.db.create_tables()

    async def stop(self) -> None:
        await self.db.close()
