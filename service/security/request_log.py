"""One JSON line per request, and a request id that the client, the log and error bodies share.

The id is the client's `X-Request-ID` when it is a plain token (letters, digits, `-_.:`, at most
128 characters), else a new one; the answer echoes it in `X-Request-ID`, and every JSON error
body carries it as `error.request_id` so a user can quote it. Errors are made in several layers
(the body limits before routing, the key and rate checks, the routes' handlers), so the id is
added here, on the way out, rather than in each of them.

What a line holds: request id, method, route template, status, latency, bytes in and out, the
analysed image's size (width x height), the key id and the client address. Never the key, the
query string, the body or anything read from the image (EXIF): only what is named here.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("span.requests")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Error bodies are small; a larger JSON answer is passed through as it is.
_MAX_ERROR_BODY = 64 * 1024


def request_id_from(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _CLIENT_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def with_request_id(body: bytes, request_id: str) -> bytes:
    """The JSON error body with `error.request_id` set; any other body unchanged."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not (isinstance(document, dict) and isinstance(document.get("error"), dict)):
        return body
    document["error"]["request_id"] = request_id
    return json.dumps(document).encode()


def configure_access_log() -> None:
    """Request lines go to stderr as bare JSON (no logging prefix), one per line."""
    if not any(getattr(h, "_span_requests", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._span_requests = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


class RequestLog:
    """Outermost middleware: request id in, request id out, one log line when the answer is sent."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        seen = {"in": 0, "out": 0, "status": None}
        held: dict = {}  # the start and body parts of a JSON error, until its body is complete

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["in"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if message["status"] >= 400 and headers.get("content-type", "").startswith("application/json"):
                    held["start"], held["body"] = message, b""
                    return
            elif message["type"] == "http.response.body":
                if "start" in held:
                    held["body"] += message.get("body", b"")
                    more = message.get("more_body", False)
                    if more and len(held["body"]) <= _MAX_ERROR_BODY:
                        return
                    body, start = held.pop("body"), held.pop("start")
                    if not more:  # complete: tag it; a long streamed one goes on untouched
                        body = with_request_id(body, request_id)
                        MutableHeaders(scope=start)["Content-Length"] = str(len(body))
                    await send(start)
                    message = {**message, "body": body}
                seen["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            log.info(json.dumps(_line(scope, state, request_id, seen, started)))


def _line(scope: Scope, state: dict, request_id: str, seen: dict, started: float) -> dict:
    route = getattr(scope.get("route"), "path", None)  # the template, e.g. /v1/localize; "" for the page
    client = scope.get("client")
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request_id": request_id,
        "method": scope["method"],
        "route": "unmatched" if route is None else route or "/",
        "path": scope["path"][:200],
        "status": seen["status"] or 500,  # no answer started: the connection was dropped or the app failed
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "bytes_in": seen["in"],
        "bytes_out": seen["out"],
        "image": state.get("image_size"),
        "images": state.get("image_count"),
        "key_id": state.get("key_id"),
        "client": client[0] if client else None,
    }
