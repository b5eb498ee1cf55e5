"""Security headers on every answer, page and API alike (pure ASGI middleware).

The page (service/static) loads only its own scripts and stylesheets, so its policy allows
nothing else: no inline script, nothing from another origin. FastAPI's /docs and /redoc pages
are the exception: they are inline HTML that loads Swagger UI / ReDoc from a CDN, so they get
a policy that allows that CDN and their inline bootstrap script, and nothing more.
"""
from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CDN = "https://cdn.jsdelivr.net"
DOCS_PATHS = ("/docs", "/redoc")


def page_policy(frame_ancestors: str) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",  # the favicon is a data: URL; heatmaps are drawn from blobs
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])


def docs_policy(frame_ancestors: str) -> str:
    return "; ".join([
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {_CDN}",
        f"style-src 'self' 'unsafe-inline' {_CDN}",
        f"img-src 'self' data: {_CDN} https://fastapi.tiangolo.com",
        "connect-src 'self'",
        "worker-src blob:",
        "base-uri 'none'",
        f"frame-ancestors {frame_ancestors}",
    ])


class SecurityHeaders:
    def __init__(self, app: ASGIApp, frame_ancestors: str = "'none'"):
        self.app = app
        self.page = page_policy(frame_ancestors)
        self.docs = docs_policy(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.docs if scope["path"].startswith(DOCS_PATHS) else self.page

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = policy
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, send_with_headers)
