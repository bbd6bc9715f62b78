"""Domain errors and the JSON error format: {"error": {"code", "message"}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from racebench.reference_service import config
from racebench.reference_service.db import (
    BUSY_SQLSTATES,
    DatabaseBusy,
    DatabaseUnavailable,
    is_unavailable,
    sqlstate_of,
)


class ServiceError(Exception):
    """An error the client caused (or may retry); carries its HTTP status and a code."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class SignatureMissing(ServiceError):
    status, code = 400, "signature_missing"


class SignatureInvalid(ServiceError):
    status, code = 400, "signature_invalid"


class EventIdMissing(ServiceError):
    status, code = 400, "event_id_missing"


class BodyNotUtf8(ServiceError):
    status, code = 400, "body_not_utf8"


class PayloadInvalid(ServiceError):
    status, code = 422, "payload_invalid"


class AmountMismatch(ServiceError):
    status, code = 422, "amount_mismatch"


class PaymentNotFound(ServiceError):
    status, code = 404, "payment_not_found"


class InvoiceNotFound(ServiceError):
    status, code = 404, "invoice_not_found"


class OrderMismatch(ServiceError):
    status, code = 409, "order_mismatch"


class CurrencyMismatch(ServiceError):
    status, code = 409, "currency_mismatch"


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("Retry-After", str(config.RETRY_AFTER_S))
    return JSONResponse(error_body(code, message, **details), status_code=status, headers=headers)


def _internal_error(exc: Exception) -> JSONResponse:
    # A bug: still JSON, still in the one error shape. The server may drop the connection
    # after an unhandled error, so the client is told not to reuse it.
    response = error_response(500, "internal_error", f"unexpected {type(exc).__name__}")
    response.headers["Connection"] = "close"
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON in one shape; none as a bare 500 page."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.details)

    @app.exception_handler(DatabaseBusy)
    async def _busy(_: Request, exc: DatabaseBusy) -> JSONResponse:
        return error_response(503, "busy", f"the payment is busy, retry later ({exc})")

    # Database.connection() turns every connection failure into DatabaseUnavailable; the raw
    # asyncpg and socket errors are caught here too, in case one escapes another way. All are
    # answered here, never by the generic 500 below (which also costs the client its
    # keep-alive connection: the server closes it after an unhandled error).
    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(OSError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(asyncpg.exceptions.InternalClientError)
    @app.exception_handler(asyncpg.PostgresError)
    async def _database(_: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            message = f"the database cannot serve: {exc}"
            return error_response(503, "database_unavailable", message)
        if sqlstate_of(exc) in BUSY_SQLSTATES:
            return error_response(503, "busy", f"the payment is busy, retry later ({exc})")
        return _internal_error(exc)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # Reached only by a bug: still JSON, still in the one error shape.
        return _internal_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return error_response(422, "validation_error", "the request is malformed", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # Keep the exception's headers: a 405 names the allowed methods in `Allow`.
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
