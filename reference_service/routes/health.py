from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from racebench.reference_service import config
from racebench.reference_service.routes.deps import ServiceDep
from racebench.reference_service.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz(service: ServiceDep) -> JSONResponse:
    ok = await service.db.ping()
    health = Health(
        status="ok" if ok else "degraded",
        strategy=service.strategy.name,
        database="ok" if ok else "unavailable",
    )
    if ok:
        return JSONResponse(health.model_dump())
    headers = {"Retry-After": str(config.RETRY_AFTER_S)}
    return JSONResponse(health.model_dump(), status_code=503, headers=headers)
