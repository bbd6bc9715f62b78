"""create_app(): the reference payment-capture service (docs/contracts.md, HTTP API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from racebench.reference_service import config, race_points
from racebench.reference_service.config import Settings
from racebench.reference_service.errors import install_error_handlers
from racebench.reference_service.middleware import ActorTag, BodySizeLimit
from racebench.reference_service.openapi import install_openapi
from racebench.reference_service.routes import health, payments, webhooks
from racebench.reference_service.service import Service
from racebench.reference_service.strategies import LockStrategy


def create_app(settings: Settings | None = None, strategy: LockStrategy | None = None) -> FastAPI:
    """The service; tables are created at start-up (lifespan) or by `Service.start()`."""
    service = Service.from_settings(settings or Settings(), strategy)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="racebench reference service", lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=config.MAX_BODY_BYTES)
    if race_points.gate_configured():
        app.add_middleware(ActorTag)
    for module in (payments, webhooks, health):
        app.include_router(module.router)
    install_openapi(app)
    return app
