"""Probes: GET /health/live (the process answers) and /health/ready (it may take work)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.errors import error_response
from service.routes.deps import ServiceDep
from service.schemas import ErrorBody

router = APIRouter()


@router.get("/health/live", summary="The process answers")
async def live() -> dict:
    return {"status": "alive"}


@router.get(
    "/health/ready",
    summary="Model loaded, warmed up, on a configured provider, and not draining",
    responses={503: {"model": ErrorBody, "description": "Not ready (loading, warming up, draining)"}},
)
async def ready(service: ServiceDep) -> JSONResponse:
    ok, reason = service.readiness()
    if ok:
        return JSONResponse({"status": "ready", "provider": service.engine.provider})
    return error_response(503, "not_ready", reason, {"Retry-After": str(service.settings.retry_after_s)})
