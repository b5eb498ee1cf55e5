"""Admission and back-pressure in one place: whether new image work is accepted (readiness,
draining, the inference queue), the pixel budget of images in flight, the byte budget of
request bodies being received, and the one table that maps every error code to its status.

The engine's own queue (service/engine.py) is the last line: it refuses work beyond its
size with `Overloaded`; this module refuses earlier, before a body is read, where it can.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service import telemetry
from service.decode import InputError
from service.engine import Engine, EngineStopped, InferenceTimeout, Overloaded
from service.settings import Settings

log = logging.getLogger("span.app")

# Every error code that is not an InputError's own (those carry their status, set where the
# input was judged: service/decode.py, the upload readers, the HTTP protections).
STATUS_OF: dict[str, int] = {
    "not_ready": 503,  # loading or warming up
    "shutting_down": 503,  # draining after SIGTERM
    "overloaded": 503,  # the queue, the pixel budget or the byte budget is full
    "timeout": 504,  # no heatmap within request_timeout_s
    "inference_failed": 500,  # ONNX Runtime failed on this input
    "internal_error": 500,  # a bug: logged
}

# Codes of errors raised by FastAPI/Starlette themselves (routing, parsing), by status.
HTTP_CODES: dict[int, str] = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable",
}


class Unavailable(Exception):
    """New image work refused before its body is read (not ready, draining, queue full)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def error_code(exc: Exception) -> tuple[str, str]:
    """(code, message) of an admission, input or engine error: an answer's `error` object."""
    if isinstance(exc, InputError):
        return exc.code, exc.message
    if isinstance(exc, Unavailable):
        return exc.code, exc.message
    if isinstance(exc, Overloaded):
        return "overloaded", str(exc)
    if isinstance(exc, InferenceTimeout):
        return "timeout", str(exc)
    if isinstance(exc, EngineStopped):
        return "shutting_down", str(exc)
    return "inference_failed", str(exc)


def error_status(exc: Exception) -> int:
    """The HTTP status of an error `error_code` describes."""
    if isinstance(exc, InputError):
        return exc.status
    return STATUS_OF[error_code(exc)[0]]


def retry_headers(exc: Exception, settings: Settings) -> dict[str, str] | None:
    """Retry-After where waiting helps; Connection: close where the body was never read."""
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(settings.retry_after_s), "Connection": "close"}
    if isinstance(exc, Overloaded):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, EngineStopped):
        return {"Retry-After": str(settings.retry_after_s)}
    return None


class Service:
    """What the routes share: settings, the engine once loaded, readiness and draining."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine
        self.draining = False
        self.warm_error: str | None = None
        self.decode_slots: asyncio.Semaphore | None = None
        self.pixel_budget: PixelBudget | None = None
        self.body_budget = BodyBudget()

    def begin_drain(self) -> None:
        """Called on SIGTERM: readiness turns 503 and new work is refused; in-flight work goes on."""
        if not self.draining:
            log.info("draining: readiness is now 503, new requests are refused")
        self.draining = True
        telemetry.READY.set(0)

    def readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "draining: the service is shutting down"
        if self.engine is None:
            return False, "loading the model"
        if self.warm_error:
            return False, f"warm-up failed: {self.warm_error}"
        if not self.engine.warmed:
            return False, "warming up"
        if not self.engine.provider_as_configured:
            return False, (
                f"execution provider in use is {self.engine.provider}, "
                f"not one of the configured {self.settings.providers}"
            )
        return True, "ready"

    def check_accepting(self) -> Engine:
        """Refuse new image work at once (503 + Retry-After) when draining, warming or full."""
        if self.draining:
            raise Unavailable("shutting_down", "the service is shutting down; retry on another instance")
        _, reason = self.readiness()
        if self.engine is None or not self.engine.warmed:
            raise Unavailable("not_ready", f"the service is not ready yet ({reason})")
        if not self.engine.has_capacity:
            telemetry.QUEUE_REJECTIONS.inc()
            raise Unavailable("overloaded", f"the inference queue is full ({self.settings.queue_size} images)")
        return self.engine


class BodyBudget:
    """Request-body bytes held by all requests being received or handled (memory): the HTTP
    protections add each chunk as it arrives and release a request's bytes when it ends."""

    def __init__(self) -> None:
        self.held = 0

    def add(self, size: int) -> None:
        self.held += size

    def release(self, size: int) -> None:
        self.held -= size


def bodies_in_flight_error(budget: int, retry_after_s: int) -> InputError:
    return InputError(503, "overloaded", f"more than {budget} bytes of uploads are being received; "
                      f"retry in {retry_after_s} s")


class PixelBudget:
    """Bounds the decoded pixels held by images in flight, from decoding to their heatmap.

    The queue bounds how many images wait; without this, each of them could hold a photo
    at the pixel limit (a 200 KB PNG can declare 80 M pixels, about 1.6 GB decoded and
    analysed), so a handful of small uploads could exhaust memory. Each image reserves its
    header's width x height before it is decoded and releases it once its map is made.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int, *, wait: bool, retry_after_s: int) -> AsyncIterator[None]:
        pixels = min(pixels, self.limit)  # one photo at the limit always fits when alone
        async with self._changed:
            if not wait and self.held + pixels > self.limit:
                error = Overloaded(retry_after_s)
                error.args = (f"too many image pixels in flight ({self.held} held, limit {self.limit}); "
                              f"retry in {retry_after_s} s",)
                raise error
            await self._changed.wait_for(lambda: self.held + pixels <= self.limit)
            self.held += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.held -= pixels
                self._changed.notify_all()
