"""Puts the protections into an app: the middleware layers and the keyed routes' dependency.

Layers, outermost first: the request log (request id in and out, one line per request), the
security headers, CORS (only when origins are configured), then whatever the app already had.
The routes that need a key take `Depends(guard)`; /health/* never does.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from service.errors import error_response
from service.security.access import AccessGuard, AccessRefused, announce
from service.security.headers import SecurityHeaders
from service.security.keys import ApiKeys
from service.security.ratelimit import RateLimiter
from service.security.request_log import RequestLog
from service.settings import Settings

# Headers a page on another origin may send and read (CORS), when origins are configured.
_CORS_REQUEST_HEADERS = ["Authorization", "X-API-Key", "X-Request-ID", "Content-Type", "Accept"]
_CORS_EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "X-Score", "X-Tampered-Fraction", "X-Threshold",
                         "X-Relative-Cut", "X-Image-Threshold", "X-Clones-Found", "X-Model-Version",
                         "X-Model-Trained"]


def protect(app: FastAPI, settings: Settings) -> AccessGuard:
    """Add the layers to `app` (call after its other middleware) and return the keyed routes' guard.
    Raises KeyConfigError when the configured keys cannot be used."""
    keys = ApiKeys.from_settings(settings.api_keys.get_secret_value(), settings.api_keys_file)
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    announce(keys, limiter, settings.metrics_require_key)

    @app.exception_handler(AccessRefused)
    async def refused(request: Request, exc: AccessRefused) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=_CORS_REQUEST_HEADERS, expose_headers=_CORS_EXPOSED_HEADERS)
    app.add_middleware(SecurityHeaders, frame_ancestors=settings.frame_ancestors)
    app.add_middleware(RequestLog)
    return AccessGuard(keys, limiter)
