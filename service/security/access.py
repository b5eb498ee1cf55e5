"""The keyed routes' gate, as a FastAPI dependency: who is calling, and may they go on now.

Missing or wrong key: 401 with `WWW-Authenticate: Bearer`. Over the client's rate: 429 with
Retry-After (the client sends too much; the overload 503 says the server is full). Both are
decided from the headers alone, before any upload is read. The key id (never the key) goes to
`request.state.key_id` for the request log. Declaring the two header schemes through FastAPI's
security classes puts them in the OpenAPI document, so /docs offers an "Authorize" button.
"""
from __future__ import annotations

import logging

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service import telemetry
from service.security.keys import ApiKeys
from service.security.ratelimit import RateLimiter, retry_after_header

log = logging.getLogger("span.access")

_BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`, the same keys")
OPEN_CLIENT = "anonymous"  # the metrics label of every client while keys are off (addresses are unbounded)


class AccessRefused(Exception):
    """A 401 or 429, answered as the service's usual JSON error with these headers. The upload,
    if any, is left unread, so the answer closes the connection rather than leave it in the
    keep-alive stream."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = {**headers, "Connection": "close"}


class AccessGuard:
    """Depends(AccessGuard(...)) on a router: 401 without a right key (when keys are configured),
    429 over the client's rate. Returns the key id (None while the service is open)."""

    def __init__(self, keys: ApiKeys, limiter: RateLimiter):
        self.keys = keys
        self.limiter = limiter

    async def __call__(
        self,
        request: Request,
        bearer: HTTPAuthorizationCredentials | None = Security(_BEARER),
        api_key: str | None = Security(_API_KEY),
    ) -> str | None:
        key_id = None
        if self.keys.required:
            presented = bearer.credentials if bearer is not None else api_key
            key_id = self.keys.identify(presented)
            if key_id is None:
                reason = "missing" if not presented else "invalid"
                telemetry.AUTH_REFUSED.labels(reason=reason).inc()
                message = ("this server needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
                           if reason == "missing" else "the API key is not one this server accepts")
                raise AccessRefused(401, f"{reason}_api_key", message, {"WWW-Authenticate": "Bearer"})
            request.state.key_id = key_id
        client = key_id or (request.client.host if request.client else "unknown")
        wait_s = self.limiter.acquire(client)
        if wait_s > 0:
            telemetry.RATE_LIMITED.labels(key_id=key_id or OPEN_CLIENT).inc()
            retry = retry_after_header(wait_s)
            raise AccessRefused(429, "rate_limited", f"too many requests from this client; "
                                f"{self.limiter.rate * 60:g} a minute are allowed after a burst of "
                                f"{self.limiter.burst:g}; retry in {retry} s", {"Retry-After": retry})
        return key_id


def announce(keys: ApiKeys, limiter: RateLimiter, metrics_keyed: bool) -> None:
    """One start-up line saying who may call the service."""
    if keys.required:
        log.info("API keys required on /v1/*%s: %d key(s), ids %s", " and /metrics" if metrics_keyed else "",
                 len(keys.ids), ", ".join(keys.ids))
    else:
        log.warning("no API keys configured (SPAN_API_KEYS, SPAN_API_KEYS_FILE): the service is open "
                    "to anyone who can reach it")
    if limiter.enabled:
        log.info("rate limit per client: %g requests a minute, burst %g", limiter.rate * 60, limiter.burst)
