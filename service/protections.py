"""HTTP-level protections, below the routes: per-route upload limits enforced while the body
streams in, the byte budget of all bodies in flight (service/admission.py), deadlines for slow
uploads and slow headers (slowloris), a cap on header size, and request telemetry.
uvicorn has none of these limits itself."""
from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import telemetry
from service.admission import Service, bodies_in_flight_error
from service.decode import InputError

log = logging.getLogger("span.app")


class HttpProtections:
    """Metrics for every request, and the upload limit enforced while the body streams in."""

    def __init__(self, app: ASGIApp, service: Service):
        self.app = app
        self.service = service
        self.bodies = service.body_budget  # request body bytes received by requests not yet finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.service.settings
        limit = settings.max_scan_bytes if scope["path"].rstrip("/") == "/v1/scan" else settings.max_upload_bytes
        budget = max(settings.max_body_bytes_in_flight, limit)  # one request at its limit always fits alone
        status = {"code": 500, "started": False}
        received = {"bytes": 0, "more": True}
        started = time.perf_counter()
        telemetry.IN_FLIGHT.inc()

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        async def limited_receive() -> Message:
            if received["more"]:  # the body is still arriving: slow uploads have a deadline (slowloris)
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, started + settings.body_timeout_s
                                                                     - time.perf_counter()))
                except TimeoutError:
                    raise _BodyTimeout(settings.body_timeout_s) from None
            else:
                message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received["bytes"] += size
                self.bodies.add(size)
                received["more"] = message.get("more_body", False)
                if received["bytes"] > limit:
                    raise _BodyTooLarge(limit)
                if self.bodies.held > budget:
                    raise _BodiesInFlight(budget)
            elif message["type"] == "http.disconnect":
                received["more"] = False
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _send_error(counting_send, _too_large(limit), drain=receive if declared <= 4 * limit else None)
            elif declared is not None and self.bodies.held + declared > budget:
                await _send_error(counting_send, bodies_in_flight_error(budget, settings.retry_after_s), drain=receive,
                                  headers={"Retry-After": str(settings.retry_after_s)})
            else:
                await self.app(scope, limited_receive, counting_send)
        except _BodyTooLarge as exc:  # the limit tripped while the body was streaming in
            if status["started"]:
                raise
            await _send_error(counting_send, _too_large(exc.limit), drain=receive if received["more"] else None)
        except _BodiesInFlight as exc:  # too many bodies streaming in at once (memory)
            if status["started"]:
                raise
            await _send_error(counting_send, bodies_in_flight_error(exc.budget, settings.retry_after_s),
                              drain=receive if received["more"] else None,
                              headers={"Retry-After": str(settings.retry_after_s)})
        except ClientDisconnect:  # the client went away mid-upload: no one to answer, nothing to log
            if status["started"]:
                raise
            status["code"] = 499  # nginx's "client closed request", for the metrics
        except _BodyTimeout as exc:
            if status["started"]:
                raise
            await _send_error(counting_send, InputError(
                408, "request_timeout", f"the request body did not arrive within {exc.seconds:g} s"), drain=None)
        finally:
            self.bodies.release(received["bytes"])
            label = getattr(scope.get("route"), "path", None)
            if label is None:  # refused before routing (Content-Length over the limit)
                label = scope["path"] if scope["path"] in ("/v1/localize", "/v1/scan", "/v1/analyze") else "unmatched"
            label = label or "/"
            telemetry.IN_FLIGHT.dec()
            telemetry.REQUESTS.labels(route=label, method=scope["method"], status=str(status["code"])).inc()
            telemetry.REQUEST_SECONDS.labels(route=label, method=scope["method"]).observe(time.perf_counter() - started)
            telemetry.RECEIVED_BYTES.labels(route=label).inc(received["bytes"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _BodyTimeout(Exception):
    """Raised from inside the app's receive() when the body is slower than body_timeout_s."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


class _BodyTooLarge(Exception):
    """Raised from inside the app's receive(); no app handler knows it, so it reaches the middleware."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


class _BodiesInFlight(Exception):
    """Raised from inside the app's receive() when all requests' bodies together pass the budget."""

    def __init__(self, budget: int):
        super().__init__(budget)
        self.budget = budget


def _too_large(limit: int) -> InputError:
    return InputError(413, "payload_too_large", f"request body exceeds the {limit} byte limit")


# Over-limit bodies: at most this many more bytes (and seconds) are read and discarded
# before the 413, so a client that sends everything before reading sees the answer; a
# client streaming without end is cut off instead of being drained forever.
_DRAIN_BYTES = 16 * 1024 * 1024
_DRAIN_SECONDS = 10.0


async def _send_error(send: Send, exc: InputError, drain: Receive | None, headers: dict | None = None) -> None:
    """Answer an over-limit body. Draining what the client is still sending (discarded,
    never stored, bounded by _DRAIN_BYTES and _DRAIN_SECONDS) lets it read the 413 instead
    of seeing a reset connection."""
    if drain is not None:
        async def bounded_drain() -> None:
            left = _DRAIN_BYTES
            while left > 0:
                message = await drain()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
                left -= len(message.get("body", b""))

        try:
            await asyncio.wait_for(bounded_drain(), _DRAIN_SECONDS)
        except TimeoutError:
            pass
    response = JSONResponse(exc.as_json(), status_code=exc.status, headers={"Connection": "close", **(headers or {})})
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


_MAX_HEADER_BYTES = 64 * 1024  # request line + headers; nginx allows 4 x 8 KiB by default
_HEADERS_TOO_LARGE = json.dumps({"error": {"code": "headers_too_large", "message":
                                           f"request line and headers exceed {_MAX_HEADER_BYTES} bytes"}}).encode()


def header_timeout_protocol(
    timeout_s: float, max_header_bytes: int = _MAX_HEADER_BYTES, base: type | None = None
) -> type:
    """uvicorn's HTTP protocol plus two limits on request headers, which uvicorn lacks
    (its default httptools parser accepts megabytes of headers, for as long as they take):
    a connection that has not sent a complete request line and headers within `timeout_s`
    of opening (or of its previous answer) is closed, so slowloris clients cannot pile up;
    one that sends more than `max_header_bytes` before its headers are complete gets a
    JSON 431 and is closed. Uses only what both of uvicorn's protocols (httptools, h11)
    share: `cycle` (replaced when a request's headers are complete, `response_complete`
    once answered) and `on_response_complete`. base: the protocol class to extend
    (default uvicorn's choice, httptools when installed, else h11)."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base

    class HeaderTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is not None:  # still waiting for a request's headers
                # Checked before this chunk is parsed: the chunk that completes the headers
                # may also carry the start of a large body.
                if self._header_bytes > max_header_bytes:
                    self._refuse_headers()
                    return
                self._header_bytes += len(data)
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._waiting_for:
                self._header_timer.cancel()  # a new request's headers are complete
                self._header_timer = None
            elif self._header_timer is None and self._idle():
                self._arm_header_timer()  # the rest of a body arrived after its answer was sent

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start a pipelined request already received
            if self._idle():
                self._arm_header_timer()

        def _idle(self) -> bool:
            """Between requests: the last one answered and its body fully received (an early
            answer, e.g. a 4xx, can leave body bytes still arriving; they are not headers)."""
            cycle = self.cycle
            idle = cycle is None or (cycle.response_complete and not cycle.more_body)
            return idle and not self.transport.is_closing()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._waiting_for = self.cycle
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _refuse_headers(self) -> None:
            self._header_timer.cancel()
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_HEADERS_TOO_LARGE), _HEADERS_TOO_LARGE))
                self.transport.close()

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is self._waiting_for and not self.transport.is_closing():
                log.debug("closing a connection whose request headers took over %.0f s", timeout_s)
                self.transport.close()

    return HeaderTimeoutProtocol
