"""POST /v1/scan: a batch of images in; one JSON item each, a result or that image's error."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from service import telemetry
from service.admission import error_code
from service.analysis import analyze_bytes_async
from service.decode import InputError
from service.engine import EngineError
from service.routes.deps import ServiceDep
from service.routes.uploads import read_many_images
from service.schemas import ERRORS, SCAN_BODY, ScanItem

router = APIRouter()


@router.post(
    "/v1/scan",
    summary="Localize manipulations in a batch of images",
    response_model=list[ScanItem],
    responses=ERRORS,
    openapi_extra=SCAN_BODY,
)
async def scan(
    request: Request,
    service: ServiceDep,
    include_heatmap: bool = Query(True, description="Include each heatmap as base64 PNG"),
) -> JSONResponse:
    settings = service.settings
    engine = service.check_accepting()
    items = await read_many_images(request, settings.max_batch_items)
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
                code, message = error_code(exc)
                telemetry.image_done(code)
                return {"index": index, "filename": filename, "error": {"code": code, "message": message}}
        telemetry.image_done()
        answer = await asyncio.to_thread(analysis.as_json, include_heatmap=include_heatmap)
        return {"index": index, "filename": filename, **answer}

    results = await asyncio.gather(*(one(i, upload) for i, upload in enumerate(items)))
    return JSONResponse(list(results))
