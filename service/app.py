"""The HTTP service, assembled: settings, the lifespan (load, warm, drain), the HTTP protections,
the error handlers, one router per resource and the web page. Each piece lives in its own module:

- service/admission.py: readiness, draining, queue/pixel/byte budgets, the error-status table;
- service/protections.py: upload limits and slow-client deadlines (ASGI middleware, uvicorn protocol);
- service/errors.py: every error as `{"error": {"code": ..., "message": ...}}`;
- service/routes/: localize, analyze, scan, model, health, telemetry, page; service/schemas.py: their OpenAPI models;
- service/server.py: uvicorn with graceful draining (`span serve`).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import telemetry
from service.admission import PixelBudget, Service
from service.engine import Engine
from service.errors import add_error_handlers
from service.protections import HttpProtections
from service.routes import analyze, health, localize, model, scan
from service.routes import telemetry as telemetry_routes
from service.routes.page import mount_page
from service.schemas import ACCESS_ERRORS
from service.security.wiring import protect
from service.settings import Settings, get_settings

log = logging.getLogger("span.app")


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
    app.add_middleware(HttpProtections, service=service)
    add_error_handlers(app, settings)
    guard = protect(app, settings)  # its layers (request log, headers, CORS) go outside HttpProtections
    keyed = {"dependencies": [Depends(guard)], "responses": ACCESS_ERRORS}
    for router in (localize.router, analyze.router, scan.router, model.router):
        app.include_router(router, **keyed)
    app.include_router(health.router)
    app.include_router(telemetry_routes.router, **(keyed if settings.metrics_require_key else {}))
    mount_page(app)
    return app


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
    telemetry.READY.set(1 if ready else 0)
    log.info("model %s %s on %s: %s", engine.manifest.name, engine.manifest.version, engine.provider, reason)
