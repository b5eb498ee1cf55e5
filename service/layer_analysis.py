"""One image -> every forensic layer asked for: the answer of POST /v1/analyze.

The upload is decoded once (same decoder, limits and pixel budget as /v1/localize); the model's
heatmap (layer `span`, with the clone search folded in as on /v1/localize) goes through the
engine's queue and batcher while the other layers run
in a worker thread, so the event loop never computes. Each layer's section says whether it
applies to this file; a layer that fails on a file answers "not applicable" with the reason,
never an error for the whole request. Server conditions (queue full, shutting down, timeout)
stay request errors (503/504), as on /v1/localize.

Maps are 8-bit greyscale PNGs (white = 1, the photo's size as displayed) in URL-safe base64
without padding (`png_base64url`): JSON clients need no multipart parser, the map can go into
a URL or a file name as it is, and browsers read it after swapping '-_' for '+/'.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from service import telemetry
from service.admission import PixelBudget
from service.analysis import decode_async, served_prediction, submit_served
from spancore.clones import CloneResult
from spancore.scoring import tampered_fraction
from service.decode import DecodedImage, declared_pixels
from service.engine import Engine, EngineError, EngineStopped, InferenceTimeout, Overloaded
from service.layers import MODEL_LAYER, LayerResult, Photo, run_layer
from service.settings import Settings


def photo_from(data: bytes, decoded: DecodedImage) -> Photo:
    return Photo(data=data, rgb=decoded.rgb, format=decoded.metadata.format, orientation=decoded.metadata.orientation)


def model_layer(rgb: np.ndarray, heatmap: np.ndarray, found: CloneResult | None, settings: Settings,
                engine: Engine, milliseconds: float) -> LayerResult:
    """The model's heatmap as a layer section: the same map, score, fraction and clones as
    /v1/localize (service.analysis.served_prediction), at the same decision (SPAN_THRESHOLD and
    SPAN_RELATIVE_CUT, else the model's operating point)."""
    heatmap, score, found = served_prediction(rgb, heatmap, settings.clones, found)
    threshold, relative_cut = engine.threshold, engine.relative_cut
    return LayerResult(
        name=MODEL_LAYER, applicable=True, heatmap=heatmap, milliseconds=milliseconds,
        summary={"score": round(score, 6),
                 "tampered_fraction": round(tampered_fraction(heatmap, threshold, relative_cut), 6),
                 "threshold": threshold, "relative_cut": relative_cut, "image_threshold": engine.image_threshold,
                 "clones": None if found is None else found.as_json()},
    )


def answer(decoded: DecodedImage, results: dict[str, LayerResult], timings: dict[str, float],
           model: dict | None, started: float, *, include_png: bool = True) -> dict[str, Any]:
    """The JSON answer. timings_ms: decode, layers (wall time of the layers and the model side by
    side), encode (the PNGs), total (wall time from the start of decoding)."""
    for result in results.values():
        telemetry.LAYER_SECONDS.labels(layer=result.name).observe(result.milliseconds / 1000)
    encoding = time.perf_counter()
    sections = {name: result.as_json(include_png=include_png) for name, result in results.items()}
    timings["encode"] = _ms(encoding)
    timings["total"] = _ms(started)
    body: dict[str, Any] = {
        "width": int(decoded.rgb.shape[1]),
        "height": int(decoded.rgb.shape[0]),
        "png_encoding": "base64url",
        "layers": sections,
        "timings_ms": timings,
        "metadata": decoded.metadata.as_json(),
    }
    if model is not None:
        body["model"] = model
    return body


async def analyze_layers_async(
    data: bytes,
    names: tuple[str, ...],
    engine: Engine,
    settings: Settings,
    *,
    decode_slots: asyncio.Semaphore | None,
    pixel_budget: PixelBudget | None,
    layer_slots: asyncio.Semaphore,
) -> dict[str, Any]:
    """Decode, then the model (through the queue) and the other layers (one worker thread, at most
    `layer_slots` images at once) side by side. Raises InputError for a bad upload, Overloaded,
    EngineStopped or InferenceTimeout for the server's conditions."""
    pixels = await asyncio.to_thread(declared_pixels, data)
    pixels = pixels if pixels <= settings.max_pixels else 0  # refused from the header, never decoded
    if pixel_budget is None:
        return await _analyze(data, names, engine, settings, decode_slots, layer_slots)
    async with pixel_budget.hold(pixels, wait=False, retry_after_s=settings.retry_after_s):
        return await _analyze(data, names, engine, settings, decode_slots, layer_slots)


async def _analyze(data: bytes, names: tuple[str, ...], engine: Engine, settings: Settings,
                   decode_slots: asyncio.Semaphore | None, layer_slots: asyncio.Semaphore) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    decoded = await decode_async(data, settings, decode_slots)
    timings["decode"] = _ms(started)
    photo = photo_from(data, decoded)
    wanted = tuple(name for name in names if name != MODEL_LAYER)

    async def layers() -> dict[str, LayerResult]:
        if not wanted:
            return {}
        async with layer_slots:
            # Admitted like an image for the model: the queue bounds all image work in flight.
            async with engine.admitted(wait=False):
                work = asyncio.to_thread(lambda: {name: run_layer(name, photo) for name in wanted})
                try:
                    return await asyncio.wait_for(work, settings.request_timeout_s)
                except TimeoutError:
                    raise InferenceTimeout(f"the layers took over {settings.request_timeout_s:.0f} s") from None

    async def model() -> LayerResult | None:
        if MODEL_LAYER not in names:
            return None
        model_started = time.perf_counter()
        try:
            heatmap, found, _ = await submit_served(engine, decoded.rgb, settings)  # as on /v1/localize
        except (Overloaded, EngineStopped, InferenceTimeout):
            raise  # the server's condition, not this file's: the request's error, as on /v1/localize
        except EngineError as error:
            return LayerResult.not_applicable(MODEL_LAYER, f"the model failed on this image: {error}")
        return await asyncio.to_thread(model_layer, decoded.rgb, heatmap, found, settings, engine,
                                       _ms(model_started))

    layers_started = time.perf_counter()
    results, span = await asyncio.gather(layers(), model())
    timings["layers"] = _ms(layers_started)
    if span is not None:
        results[MODEL_LAYER] = span
    model_info = engine.manifest.model_info() if MODEL_LAYER in names else None
    return await asyncio.to_thread(answer, decoded, _in_order(results, names), timings, model_info, started)


def _in_order(results: dict[str, LayerResult], names: tuple[str, ...]) -> dict[str, LayerResult]:
    return {name: results[name] for name in names if name in results}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
