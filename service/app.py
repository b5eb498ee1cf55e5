"""The HTTP service: FastAPI app factory, lifespan (load, warm, drain), routes, errors, metrics.

Routes are thin: read the upload, call `analysis.analyze_bytes_async`, shape the answer.
Every error body is `{"error": {"code": ..., "message": ...}}`, FastAPI's own 404/405/422
and unexpected exceptions included.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.analysis import Analysis, PixelBudget, analyze_bytes_async
from service.analyze_route import add_analyze_route
from service.decode import ALLOWED_FORMATS, InputError
from service.engine import Engine, EngineError, EngineStopped, InferenceTimeout, Overloaded
from service.render import heatmap_png, overlay_jpeg
from service.settings import Settings, get_settings

log = logging.getLogger("span.app")
STATIC_DIR = Path(__file__).resolve().parent / "static"
Format = Literal["png", "json", "overlay"]


# ---------------------------------------------------------------------------- state
class Service:
    """What the routes share: settings, the engine once loaded, readiness and draining."""

    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self.engine = engine
        self.draining = False
        self.warm_error: str | None = None
        self.decode_slots: asyncio.Semaphore | None = None
        self.pixel_budget: PixelBudget | None = None

    def begin_drain(self) -> None:
        """Called on SIGTERM: readiness turns 503 and new work is refused; in-flight work goes on."""
        if not self.draining:
            log.info("draining: readiness is now 503, new requests are refused")
        self.draining = True
        metrics.READY.set(0)

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
            raise _Unavailable("shutting_down", "the service is shutting down; retry on another instance")
        _, reason = self.readiness()
        if self.engine is None or not self.engine.warmed:
            raise _Unavailable("not_ready", f"the service is not ready yet ({reason})")
        if not self.engine.has_capacity:
            metrics.QUEUE_REJECTIONS.inc()
            raise _Unavailable("overloaded", f"the inference queue is full ({self.settings.queue_size} images)")
        return self.engine


class _Unavailable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------- schemas (OpenAPI)
class ErrorDetail(BaseModel):
    code: str = Field(examples=["corrupt_image"])
    message: str = Field(examples=["cannot decode the JPEG pixel data: image file is truncated"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelSummary(BaseModel):
    name: str
    version: str
    sha256: str = Field(description="sha256 of the ONNX file that produced this answer")
    trained: bool
    precision: str = Field(description="'fp32' (span.onnx) or 'int8' (span.int8.onnx)")


class ImageMetadataOut(BaseModel):
    format: str = Field(description="Detected from the bytes: " + ", ".join(ALLOWED_FORMATS))
    width: int = Field(description="Displayed width (after EXIF orientation)")
    height: int
    original_width: int = Field(description="Width as stored in the file")
    original_height: int
    mode: str = Field(description="Pillow mode of the stored pixels (RGB, RGBA, P, I;16, CMYK...)")
    orientation: int | None = Field(description="EXIF orientation tag 1..8, null when absent")
    orientation_applied: bool
    has_alpha: bool = Field(description="Transparent pixels were composited over white")
    camera: str | None
    software: str | None
    captured: str | None = Field(description="EXIF DateTimeOriginal as written by the camera")


class LocalizeResult(BaseModel):
    score: float = Field(ge=0, le=1, description="Image-level score: mean of the top 1% of the map's probabilities")
    tampered_fraction: float = Field(ge=0, le=1, description="Fraction of pixels with probability >= threshold")
    threshold: float
    width: int
    height: int
    heatmap_png_base64: str | None = Field(
        None, description="8-bit grayscale PNG, width x height, white = probability 1"
    )
    model: ModelSummary
    timings_ms: dict[str, float] = Field(description="decode, queue_wait, inference, encode, total")
    metadata: ImageMetadataOut

    model_config = {
        "json_schema_extra": {
            "example": {
                "score": 0.83,
                "tampered_fraction": 0.042,
                "threshold": 0.5,
                "width": 1024,
                "height": 768,
                "heatmap_png_base64": "iVBORw0KGgoAAAANSUhEUgAABAAAAAMACAAAAAB...",
                "model": {"name": "span", "version": "0.1.0", "sha256": "9f2c...", "trained": False},
                "timings_ms": {"decode": 3.1, "queue_wait": 0.4, "inference": 812.0, "encode": 4.2, "total": 819.7},
                "metadata": {
                    "format": "JPEG", "width": 1024, "height": 768, "original_width": 768,
                    "original_height": 1024, "mode": "RGB", "orientation": 6, "orientation_applied": True,
                    "has_alpha": False, "camera": "Canon EOS 40D", "software": "GIMP 2.4.5",
                    "captured": "2008:05:30 15:56:01",
                },
            }
        }
    }


class ScanItem(BaseModel):
    index: int
    filename: str | None
    score: float | None = None
    tampered_fraction: float | None = None
    threshold: float | None = None
    width: int | None = None
    height: int | None = None
    heatmap_png_base64: str | None = None
    model: ModelSummary | None = None
    timings_ms: dict[str, float] | None = None
    metadata: ImageMetadataOut | None = None
    error: ErrorDetail | None = Field(None, description="Set instead of the result when this image failed")

    model_config = {
        "json_schema_extra": {
            "example": {
                "index": 2,
                "filename": "x.jpg",
                "error": {"code": "corrupt_image", "message": "cannot decode the JPEG pixel data: image file is truncated"},
            }
        }
    }


class ModelDescription(BaseModel):
    name: str
    version: str
    sha256: str
    trained: bool
    status: str = Field(description="Says loudly when the weights are untrained")
    provider: str = Field(description="ONNX Runtime execution provider actually in use")
    providers_in_use: list[str]
    providers_configured: list[str]
    input: dict[str, Any]
    output: dict[str, Any]
    architecture: dict[str, Any]
    produced_by: dict[str, Any]
    scores: dict[str, Any]
    large_image_policy: str
    threshold: float
    warning: str | None = Field(None, description="Read before trusting a map: set while the model is "
                                "untrained, or when its makers attached a caveat (e.g. a weak training budget)")
    training: dict[str, Any] = Field(default_factory=dict, description="How the weights were trained")
    precision: str = Field(description="'fp32' (span.onnx) or 'int8' (span.int8.onnx), see SPAN_PRECISION")
    int8_gate: str = Field(description="Whether the int8 variant passed its accuracy gate, from the manifest's scores")


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Upload, pixel count or batch too large"},
    415: {"model": ErrorBody, "description": "Not a supported image format (read from the bytes)"},
    422: {"model": ErrorBody, "description": "Corrupt or truncated image, or a malformed request"},
    503: {"model": ErrorBody, "description": "Queue full, warming up or shutting down; see Retry-After"},
    504: {"model": ErrorBody, "description": "No heatmap within the request timeout"},
}

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "One image as multipart field `image`, or the raw image as the body. "
        "The format is read from the bytes; the file name and Content-Type are ignored.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

_SCAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["images"],
                }
            }
        },
    }
}


# ---------------------------------------------------------------------------- middleware
class _HttpMiddleware:
    """Metrics for every request, and the upload limit enforced while the body streams in."""

    def __init__(self, app: ASGIApp, service: Service):
        self.app = app
        self.service = service
        self.body_bytes_in_flight = 0  # request body bytes received by requests not yet finished

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
        metrics.IN_FLIGHT.inc()

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
                self.body_bytes_in_flight += size
                received["more"] = message.get("more_body", False)
                if received["bytes"] > limit:
                    raise _BodyTooLarge(limit)
                if self.body_bytes_in_flight > budget:
                    raise _BodiesInFlight(budget)
            elif message["type"] == "http.disconnect":
                received["more"] = False
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _send_error(counting_send, _too_large(limit), drain=receive if declared <= 4 * limit else None)
            elif declared is not None and self.body_bytes_in_flight + declared > budget:
                await _send_error(counting_send, _bodies_in_flight(budget, settings.retry_after_s), drain=receive,
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
            await _send_error(counting_send, _bodies_in_flight(exc.budget, settings.retry_after_s),
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
            self.body_bytes_in_flight -= received["bytes"]
            label = getattr(scope.get("route"), "path", None)
            if label is None:  # refused before routing (Content-Length over the limit)
                label = scope["path"] if scope["path"] in ("/v1/localize", "/v1/scan", "/v1/analyze") else "unmatched"
            label = label or "/"
            metrics.IN_FLIGHT.dec()
            metrics.REQUESTS.labels(route=label, method=scope["method"], status=str(status["code"])).inc()
            metrics.REQUEST_SECONDS.labels(route=label, method=scope["method"]).observe(time.perf_counter() - started)
            metrics.RECEIVED_BYTES.labels(route=label).inc(received["bytes"])


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


def _bodies_in_flight(budget: int, retry_after_s: int) -> InputError:
    return InputError(503, "overloaded", f"more than {budget} bytes of uploads are being received; "
                      f"retry in {retry_after_s} s")


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


# ---------------------------------------------------------------------------- app factory
def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app. The model loads at start-up (a bad manifest stops the process);
    warm-up runs in the background so /health/live answers at once and /health/ready
    turns 200 when it is done."""
    settings = settings or get_settings()
    service = Service(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.decode_slots = asyncio.Semaphore(settings.decode_workers)
        service.pixel_budget = PixelBudget(max(settings.max_pixels_in_flight, settings.max_pixels))
        if service.engine is None:
            service.engine = await asyncio.to_thread(Engine.from_settings, settings)
        warm = asyncio.create_task(_warm(service))
        try:
            yield
        finally:
            service.begin_drain()
            warm.cancel()
            if engine is None:  # an engine passed in belongs to the caller
                await asyncio.to_thread(service.engine.close, settings.shutdown_grace_s)

    app = FastAPI(
        title="SPAN image manipulation localization",
        version="0.1.0",
        summary="A photo in; a per-pixel map of where it was edited out, with an image-level score.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(_HttpMiddleware, service=service)
    _add_error_handlers(app, settings)
    _add_routes(app, service)
    add_analyze_route(app, service, _read_one_image, _ERRORS, _IMAGE_BODY)
    if (STATIC_DIR / "index.html").is_file():
        app.router.routes.append(_PageMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="static"))
    return app


class _PageMount(Mount):
    """The web page at `/`, without shadowing the API: a wrong method on an API path stays a 405."""

    API_PREFIXES = ("/v1/", "/health/", "/metrics", "/docs", "/redoc", "/openapi.json")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and scope["path"].startswith(self.API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)


async def _warm(service: Service) -> None:
    engine = service.engine
    try:
        if service.settings.warmup:
            await asyncio.to_thread(engine.warm_up)
        else:
            engine.warmed = True
    except Exception as exc:  # not ready, with the reason on /health/ready
        log.exception("warm-up failed")
        service.warm_error = str(exc)
        return
    ready, reason = service.readiness()
    metrics.READY.set(1 if ready else 0)
    log.info("model %s %s on %s: %s", engine.manifest.name, engine.manifest.version, engine.provider, reason)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable",
}


def _add_error_handlers(app: FastAPI, settings: Settings) -> None:
    retry = {"Retry-After": str(settings.retry_after_s)}

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(_Unavailable)
    async def unavailable(request: Request, exc: _Unavailable) -> JSONResponse:
        # Refused before the body was read: close the connection rather than leave the
        # unread body in the keep-alive stream.
        return _error(503, exc.code, exc.message, {**retry, "Connection": "close"})

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return _error(503, "overloaded", str(exc), {"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(EngineStopped)
    async def stopped(request: Request, exc: EngineStopped) -> JSONResponse:
        return _error(503, "shutting_down", str(exc), retry)

    @app.exception_handler(InferenceTimeout)
    async def timeout(request: Request, exc: InferenceTimeout) -> JSONResponse:
        return _error(504, "timeout", str(exc))

    @app.exception_handler(EngineError)
    async def engine_error(request: Request, exc: EngineError) -> JSONResponse:
        return _error(500, "inference_failed", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return _error(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"unexpected server error ({type(exc).__name__}); it has been logged")


# ---------------------------------------------------------------------------- routes
def _add_routes(app: FastAPI, service: Service) -> None:
    settings = service.settings

    @app.post(
        "/v1/localize",
        summary="Localize manipulations in one image",
        response_model=LocalizeResult,
        response_class=Response,
        responses={
            200: {
                "description": "Default: the heatmap as an 8-bit grayscale PNG (white = probability 1), "
                "the size of the image as displayed. `?format=json` or `Accept: application/json`: "
                "the JSON below. `?format=overlay`: a JPEG of the photo with the heatmap blended in.",
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/LocalizeResult"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            **_ERRORS,
        },
        openapi_extra=_IMAGE_BODY,
    )
    async def localize(
        request: Request,
        format: Format | None = Query(
            None, description="png (default), json or overlay; overrides the Accept header"
        ),
    ) -> Response:
        engine = service.check_accepting()
        want = format or _preferred_format(request.headers.get("accept", ""))
        data = await _read_one_image(request)
        try:
            analysis = await analyze_bytes_async(
                data, engine, settings, keep_photo=want == "overlay", decode_slots=service.decode_slots,
                pixel_budget=service.pixel_budget,
            )
        except (InputError, EngineError) as exc:
            metrics.image_done(_item_error(exc)[0])
            raise
        metrics.image_done()
        return await asyncio.to_thread(_render_answer, analysis, want)

    @app.post(
        "/v1/scan",
        summary="Localize manipulations in a batch of images",
        response_model=list[ScanItem],
        responses=_ERRORS,
        openapi_extra=_SCAN_BODY,
    )
    async def scan(
        request: Request,
        include_heatmap: bool = Query(True, description="Include each heatmap as base64 PNG"),
    ) -> JSONResponse:
        engine = service.check_accepting()
        items = await _read_many_images(request, settings.max_batch_items)
        # At most 2 batches' worth of this request's images in flight, so one scan cannot fill the queue.
        slots = asyncio.Semaphore(max(2, 2 * settings.max_batch_size))

        async def one(index: int, upload: UploadFile) -> dict:
            filename = upload.filename
            async with slots:
                try:
                    data = await upload.read()  # spooled to disk by the parser; read only when its turn comes
                    analysis = await analyze_bytes_async(
                        data, engine, settings, wait=True, decode_slots=service.decode_slots,
                        pixel_budget=service.pixel_budget,
                    )
                except (InputError, EngineError) as exc:
                    code, message = _item_error(exc)
                    metrics.image_done(code)
                    return {"index": index, "filename": filename, "error": {"code": code, "message": message}}
            metrics.image_done()
            answer = await asyncio.to_thread(analysis.as_json, include_heatmap=include_heatmap)
            return {"index": index, "filename": filename, **answer}

        results = await asyncio.gather(*(one(i, upload) for i, upload in enumerate(items)))
        return JSONResponse(list(results))

    @app.get("/v1/model", summary="The model being served", response_model=ModelDescription, responses={503: _ERRORS[503]})
    async def model() -> dict:
        engine = service.engine
        if engine is None:
            raise _Unavailable("not_ready", "the model is still loading")
        manifest = engine.manifest
        answer = {
            **manifest.describe(),
            "provider": engine.provider,
            "providers_in_use": engine.providers_in_use,
            "providers_configured": settings.providers,
            "large_image_policy": settings.large_image_policy,
            "threshold": settings.threshold,
        }
        return answer

    @app.get("/health/live", summary="The process answers")
    async def live() -> dict:
        return {"status": "alive"}

    @app.get(
        "/health/ready",
        summary="Model loaded, warmed up, on a configured provider, and not draining",
        responses={503: {"model": ErrorBody, "description": "Not ready (loading, warming up, draining)"}},
    )
    async def ready() -> JSONResponse:
        ok, reason = service.readiness()
        if ok:
            return JSONResponse({"status": "ready", "provider": service.engine.provider})
        return _error(503, "not_ready", reason, {"Retry-After": str(settings.retry_after_s)})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _render_answer(analysis: Analysis, want: str) -> Response:
    headers = {
        "X-Score": f"{analysis.score:.6f}",
        "X-Tampered-Fraction": f"{analysis.tampered_fraction:.6f}",
        "X-Threshold": str(analysis.threshold),
        "X-Model-Version": analysis.model["version"],
        "X-Model-Trained": str(analysis.model["trained"]).lower(),
    }
    if want == "json":
        return JSONResponse(analysis.as_json(), headers=headers)
    if want == "overlay":
        return Response(overlay_jpeg(analysis.rgb, analysis.heatmap), media_type="image/jpeg", headers=headers)
    return Response(heatmap_png(analysis.heatmap), media_type="image/png", headers=headers)


def _preferred_format(accept: str) -> str:
    """JSON when the Accept header ranks application/json above image/png; the PNG otherwise."""
    quality = {}
    for part in accept.lower().split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.strip()] = max(q, quality.get(media.strip(), 0.0))
    json_q = quality.get("application/json", 0.0)
    return "json" if json_q > 0 and json_q > quality.get("image/png", 0.0) else "png"


def _item_error(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, InputError):
        return exc.code, exc.message
    if isinstance(exc, Overloaded):
        return "overloaded", str(exc)
    if isinstance(exc, InferenceTimeout):
        return "timeout", str(exc)
    if isinstance(exc, EngineStopped):
        return "shutting_down", str(exc)
    return "inference_failed", str(exc)


async def _read_one_image(request: Request) -> bytes:
    if _is_multipart(request):
        form = await _parse_form(request, max_files=4)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InputError(422, "missing_image", "multipart request without a file field named `image`")
        return await upload.read()
    return await request.body()


async def _read_many_images(request: Request, limit: int) -> list[UploadFile]:
    if not _is_multipart(request):
        raise InputError(422, "not_multipart", "POST /v1/scan takes multipart/form-data with repeated `images` fields")
    form = await _parse_form(request, max_files=limit + 1)
    uploads = [u for u in form.getlist("images") if isinstance(u, UploadFile)]
    if not uploads:
        raise InputError(422, "missing_images", "multipart request without file fields named `images`")
    if len(uploads) > limit:
        raise InputError(413, "too_many_images", f"{len(uploads)} images in one request; the limit is {limit}")
    return uploads


async def _parse_form(request: Request, max_files: int):
    try:
        return await request.form(max_files=max_files, max_fields=64)
    except StarletteHTTPException as exc:  # python-multipart's limits and syntax errors
        if "Too many files" in str(exc.detail):
            raise InputError(413, "too_many_images", f"too many files; the limit is {max_files - 1}") from None
        raise InputError(422, "malformed_multipart", f"cannot parse the multipart body: {exc.detail}") from None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


# ---------------------------------------------------------------------------- serving
def serve(host: str, port: int, log_level: str = "info") -> None:
    """Run the app under uvicorn until SIGTERM/SIGINT, then drain: readiness turns 503 at once,
    the listener closes after `drain_delay_s`, in-flight requests get `shutdown_grace_s` to finish."""
    settings = get_settings()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level=log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    _DrainingServer(config, application.state.service, settings.drain_delay_s).run()


class _DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts draining before the listener closes."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_delay_s: float):
        super().__init__(config)
        self.service = service
        self.drain_delay_s = drain_delay_s

    def handle_exit(self, sig, frame) -> None:
        first = not self.service.draining
        self.service.begin_drain()
        if first and self.drain_delay_s > 0:
            log.info("signal %s: the listener closes in %.1f s", sig, self.drain_delay_s)
            threading.Timer(self.drain_delay_s, super().handle_exit, (sig, frame)).start()
            return
        super().handle_exit(sig, frame)  # a second signal, or no delay: stop now


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
