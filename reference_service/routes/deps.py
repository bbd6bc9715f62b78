"""Dependencies that make route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from reference_service.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
