"""Every error answer is `{"error": {"code": ..., "message": ...}}`, FastAPI's own 404/405/422
and unexpected exceptions included; statuses come from service/admission.py's one table."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.admission import HTTP_CODES, STATUS_OF, Unavailable, error_code, error_status, retry_headers
from service.decode import InputError
from service.engine import EngineError
from service.settings import Settings

log = logging.getLogger("span.app")


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI, settings: Settings) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        # Unavailable is raised before the body was read: its headers close the connection
        # rather than leave the unread body in the keep-alive stream.
        code, message = error_code(exc)
        return error_response(error_status(exc), code, message, retry_headers(exc, settings))

    for kind in (InputError, Unavailable, EngineError):  # EngineError covers its subclasses
        app.add_exception_handler(kind, refused)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(STATUS_OF["internal_error"], "internal_error",
                              f"unexpected server error ({type(exc).__name__}); it has been logged")
