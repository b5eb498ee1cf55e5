"""GET /v1/model: the model being served (the manifest's description, where and how it runs)."""
from __future__ import annotations

from fastapi import APIRouter

from service.admission import Unavailable
from service.routes.deps import ServiceDep
from service.schemas import ERRORS, ModelDescription
from spancore.clones import CLONES_VERSION

router = APIRouter()


@router.get("/v1/model", summary="The model being served", response_model=ModelDescription, responses={503: ERRORS[503]})
async def model(service: ServiceDep) -> dict:
    engine = service.engine
    if engine is None:
        raise Unavailable("not_ready", "the model is still loading")
    settings = service.settings
    return {
        **engine.manifest.describe(),
        "provider": engine.provider,
        "providers_in_use": engine.providers_in_use,
        "providers_configured": settings.providers,
        "large_image_policy": settings.large_image_policy,
        "threshold": engine.threshold,
        "relative_cut": engine.relative_cut,
        "image_threshold": engine.image_threshold,
        "clones": {"enabled": settings.clones, "version": CLONES_VERSION},
    }
