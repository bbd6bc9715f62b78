"""Dependencies that make route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.convertors import Convertor, register_url_convertor

from racebench.reference_service.schemas import MAX_ID
from racebench.reference_service.service import Service


class IdConvertor(Convertor[int]):
    """A path id: ASCII digits only, so `1_0`, `+1`, `1.0` or ` 1` match no route (404), and
    `/payments/verify` is not a payment id (its GET answers 405). Out of range: 422."""

    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value) if len(value) <= len(str(MAX_ID)) else MAX_ID + 1

    def to_string(self, value: int) -> str:
        return str(value)


# Registered before any route is declared: `{payment_id:id}` in a path uses it.
register_url_convertor("id", IdConvertor())


async def get_service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, which cost
    # every request a thread hand-off (seen in a py-spy profile under load).
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
