"""POST /v1/analyze: one image in; the forensic layers asked for out, one JSON section each.

Thin: validate the layer list, admit, read the upload, call `layer_analysis.analyze_layers_async`.
Limits are those of /v1/localize (upload size, pixel count, pixel budget, queue, request timeout).
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from service.decode import InputError
from service.layer_analysis import analyze_layers_async
from service.layers import DEFAULT_LAYERS, LAYER_NAMES, SLOW_LAYERS, parse_layers
from service.routes.deps import ServiceDep
from service.routes.uploads import read_one_image
from service.schemas import ERRORS, IMAGE_BODY, AnalyzeResult

router = APIRouter()


def layer_slots(request: Request, workers: int) -> asyncio.Semaphore:
    """One semaphore per app: at most `layer_workers` images have their layers computed at once."""
    slots = getattr(request.app.state, "layer_slots", None)
    if slots is None:
        slots = request.app.state.layer_slots = asyncio.Semaphore(workers)
    return slots


@router.post(
    "/v1/analyze",
    summary="Forensic layers of one image: model heatmap, ELA, JPEG ghost, noise, JPEG structure, "
            "copy-move, metadata, Content Credentials",
    response_model=AnalyzeResult,
    responses=ERRORS,
    openapi_extra=IMAGE_BODY,
)
async def analyze(
    request: Request,
    service: ServiceDep,
    layers: str | None = Query(
        None, description=f"Comma-separated layers among {', '.join(LAYER_NAMES)}, or 'all'. Default: "
        f"{','.join(DEFAULT_LAYERS)} (all but the slow {', '.join(SLOW_LAYERS)})."),
) -> JSONResponse:
    try:
        names = parse_layers(layers)
    except ValueError as error:
        raise InputError(422, "unknown_layer", str(error)) from None
    engine = service.check_accepting()
    data = await read_one_image(request)
    body = await analyze_layers_async(
        data, names, engine, service.settings, decode_slots=service.decode_slots,
        pixel_budget=service.pixel_budget, layer_slots=layer_slots(request, service.settings.layer_workers),
    )
    request.state.image_size = f"{body['width']}x{body['height']}"  # for the request log
    return JSONResponse(body)
