"""POST /v1/analyze: one image in; the forensic layers asked for out, one JSON section each.

Thin: validate the layer list, admit, read the upload, call `layer_analysis.analyze_layers_async`.
Limits are those of /v1/localize (upload size, pixel count, pixel budget, queue, request timeout).
"""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.decode import InputError
from service.layer_analysis import analyze_layers_async
from service.layers import DEFAULT_LAYERS, LAYER_NAMES, SLOW_LAYERS, parse_layers

class LayerSection(BaseModel):
    applicable: bool = Field(description="False when the layer has nothing to say about this file; see reason")
    reason: str | None = Field(None, description="Why the layer does not apply (not a JPEG, no metadata, ...)")
    summary: dict[str, Any] = Field(description="The layer's figures (docs: README 'Forensic layers')")
    png_base64url: str | None = Field(
        None, description="Pixel layers: 8-bit greyscale PNG (white = 1), the photo's size as displayed, "
        "URL-safe base64 without padding (RFC 4648 section 5)")
    ms: float = Field(description="Time the layer took, in milliseconds")


class AnalyzeResult(BaseModel):
    width: int = Field(description="Width of the photo as displayed (after EXIF orientation)")
    height: int
    png_encoding: str = Field("base64url", description="How the layers' PNGs are encoded")
    layers: dict[str, LayerSection] = Field(description="One section per layer asked for, in the order asked")
    timings_ms: dict[str, float] = Field(description="decode, layers (the layers and the model side by side), encode, "
                                         "total (wall time); each layer's own time is in its section")
    metadata: dict[str, Any] = Field(description="What the decoder read: format, sizes, orientation, camera...")
    model: dict[str, Any] | None = Field(None, description="The model that made the `span` layer, when asked")


def layer_slots(request: Request, workers: int) -> asyncio.Semaphore:
    """One semaphore per app: at most `layer_workers` images have their layers computed at once."""
    slots = getattr(request.app.state, "layer_slots", None)
    if slots is None:
        slots = request.app.state.layer_slots = asyncio.Semaphore(workers)
    return slots


def add_analyze_route(app, service, read_one_image, errors: dict, image_body: dict) -> None:
    """Mount the route on the app (the service's routes are assembled in service/app.py)."""
    router = APIRouter()

    @router.post(
        "/v1/analyze",
        summary="Forensic layers of one image: model heatmap, ELA, JPEG ghost, noise, JPEG structure, "
                "copy-move, metadata, Content Credentials",
        response_model=AnalyzeResult,
        responses=errors,
        openapi_extra=image_body,
    )
    async def analyze(
        request: Request,
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
        return JSONResponse(body)

    app.include_router(router)
