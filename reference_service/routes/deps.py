"""Dependencies that make route signatures read like prose."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from racebench.reference_service.errors import PayloadInvalid
from racebench.reference_service.json_depth import MAX_JSON_DEPTH, json_depth_exceeds
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


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is refused (422 payload_invalid) if it nests deeper than
    MAX_JSON_DEPTH, before FastAPI parses it (its json.loads would hit RecursionError)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            if json_depth_exceeds(await request.body()):  # read once; FastAPI reuses it
                raise PayloadInvalid(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
            return await handler(request)

        return checked
