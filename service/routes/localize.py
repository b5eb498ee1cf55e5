"""POST /v1/localize: one image in; its heatmap (PNG), a JSON answer, or an overlay (JPEG) out."""
from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from service import telemetry
from service.admission import error_code
from service.analysis import Analysis, analyze_bytes_async
from service.decode import InputError
from service.engine import EngineError
from service.render import heatmap_png, overlay_jpeg
from service.routes.deps import ServiceDep
from service.routes.uploads import read_one_image
from service.schemas import ERRORS, IMAGE_BODY, LocalizeResult

router = APIRouter()
Format = Literal["png", "json", "overlay"]


@router.post(
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
        **ERRORS,
    },
    openapi_extra=IMAGE_BODY,
)
async def localize(
    request: Request,
    service: ServiceDep,
    format: Format | None = Query(
        None, description="png (default), json or overlay; overrides the Accept header"
    ),
) -> Response:
    engine = service.check_accepting()
    want = format or preferred_format(request.headers.get("accept", ""))
    data = await read_one_image(request)
    try:
        analysis = await analyze_bytes_async(
            data, engine, service.settings, keep_photo=want == "overlay", decode_slots=service.decode_slots,
            pixel_budget=service.pixel_budget,
        )
    except (InputError, EngineError) as exc:
        telemetry.image_done(error_code(exc)[0])
        raise
    telemetry.image_done()
    request.state.image_size = f"{analysis.width}x{analysis.height}"  # for the request log
    return await asyncio.to_thread(render_answer, analysis, want)


def render_answer(analysis: Analysis, want: str) -> Response:
    headers = {
        "X-Score": f"{analysis.score:.6f}",
        "X-Tampered-Fraction": f"{analysis.tampered_fraction:.6f}",
        "X-Threshold": str(analysis.threshold),
        "X-Relative-Cut": str(analysis.relative_cut),
        "X-Image-Threshold": str(analysis.image_threshold),
        "X-Model-Version": analysis.model["version"],
        "X-Model-Trained": str(analysis.model["trained"]).lower(),
    }
    if analysis.clones is not None:  # absent when SPAN_CLONES is off: not searched
        headers["X-Clones-Found"] = str(analysis.clones["found"]).lower()
    if want == "json":
        return JSONResponse(analysis.as_json(), headers=headers)
    if want == "overlay":
        return Response(overlay_jpeg(analysis.rgb, analysis.heatmap), media_type="image/jpeg", headers=headers)
    return Response(heatmap_png(analysis.heatmap), media_type="image/png", headers=headers)


def preferred_format(accept: str) -> str:
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
