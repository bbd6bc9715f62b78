"""Dependencies that make route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from racebench.reference_service.service import Service


async def get_service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, which cost
    # every request a thread hand-off (seen in a py-spy profile under load).
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
