"""One image -> one `Analysis`: decode, heatmap, image score, tampered fraction, timings.

Shared by the HTTP service (async, through the engine's queue), `span scan` and
`span evaluate` (sync). The JSON form is the one in docs/architecture.md.

The image score and tampered fraction are spancore.scoring's, the same maths training uses.
Where SPAN_CLONES is on (the default), the clones spancore.clones finds (parts of the photo
copied onto itself by a plain shift) are folded into the map and the score by
`served_prediction`, which `span evaluate` calls too.
"""
from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field

import numpy as np

from service.admission import PixelBudget
from service.decode import DecodedImage, ImageMetadata, decode_image, declared_pixels
from service.engine import Engine
from service.render import heatmap_png
from service.settings import Settings
from spancore.clones import CloneResult, find_clones, fold_in
from spancore.scoring import image_score, tampered_fraction

@dataclass
class Analysis:
    heatmap: np.ndarray  # float32 [height, width] in 0..1, the photo as displayed
    score: float
    tampered_fraction: float
    threshold: float
    relative_cut: float
    image_threshold: float
    metadata: ImageMetadata
    model: dict
    timings_ms: dict = field(default_factory=dict)
    rgb: np.ndarray | None = None  # the decoded photo, kept only when an overlay is wanted
    clones: dict | None = None  # CloneResult.as_json(); None where SPAN_CLONES is off
    beside: tuple[str, ...] = ()  # timings spent beside another stage (inside it): not added to "total"

    @property
    def width(self) -> int:
        return int(self.heatmap.shape[1])

    @property
    def height(self) -> int:
        return int(self.heatmap.shape[0])

    def as_json(self, *, include_heatmap: bool = True) -> dict:
        """The JSON answer (docs/architecture.md). Encoding the PNG is timed as "encode"."""
        answer = {
            "score": round(self.score, 6),
            "tampered_fraction": round(self.tampered_fraction, 6),
            "threshold": self.threshold,
            "relative_cut": self.relative_cut,
            "image_threshold": self.image_threshold,
            "width": self.width,
            "height": self.height,
            "clones": self.clones,
        }
        if include_heatmap:
            started = time.perf_counter()
            answer["heatmap_png_base64"] = base64.b64encode(heatmap_png(self.heatmap)).decode("ascii")
            self.add_timing("encode", started)
        answer["model"] = self.model
        answer["timings_ms"] = self.timings_ms
        answer["metadata"] = self.metadata.as_json()
        return answer

    def add_timing(self, name: str, started: float) -> None:
        """Record a stage's time and keep "total" the sum of the stages."""
        self.timings_ms.pop("total", None)
        self.timings_ms[name] = round((time.perf_counter() - started) * 1000, 2)
        self.timings_ms["total"] = _total(self.timings_ms, self.beside)


def analyze_bytes(data: bytes, engine: Engine, settings: Settings, *, keep_photo: bool = False) -> Analysis:
    """Decode + predict + score, in the caller's thread. Raises service.decode.InputError."""
    timings: dict = {}
    started = time.perf_counter()
    decoded = decode_image(data, max_pixels=settings.max_pixels, min_side=settings.min_side)
    timings["decode"] = _ms(started)
    started = time.perf_counter()
    heatmap = engine.predict(decoded.rgb)
    timings["inference"] = _ms(started)
    return _finish(decoded, heatmap, engine, settings, timings, keep_photo)


async def analyze_bytes_async(
    data: bytes,
    engine: Engine,
    settings: Settings,
    *,
    keep_photo: bool = False,
    wait: bool = False,
    decode_slots: asyncio.Semaphore | None = None,
    pixel_budget: PixelBudget | None = None,
) -> Analysis:
    """The same through the engine's queue and batcher; decoding runs in a worker thread.

    wait: see Engine.submit (False: Overloaded at once when the queue is full).
    decode_slots: bounds how many images are decoded at once (memory).
    pixel_budget: bounds the decoded pixels held by images in flight (memory); with
    wait=False a full budget raises Overloaded at once, like a full queue.
    """
    if pixel_budget is None:
        return await _analyze_async(data, engine, settings, keep_photo, wait, decode_slots)
    pixels = await asyncio.to_thread(declared_pixels, data)
    pixels = pixels if pixels <= settings.max_pixels else 0  # refused from the header, never decoded
    async with pixel_budget.hold(pixels, wait=wait, retry_after_s=settings.retry_after_s):
        return await _analyze_async(data, engine, settings, keep_photo, wait, decode_slots)


async def _analyze_async(
    data: bytes, engine: Engine, settings: Settings, keep_photo: bool, wait: bool,
    decode_slots: asyncio.Semaphore | None,
) -> Analysis:
    timings: dict = {}
    started = time.perf_counter()
    decoded = await decode_async(data, settings, decode_slots)
    timings["decode"] = _ms(started)
    del data
    started = time.perf_counter()
    engine_timings: dict = {}
    heatmap, clones, clone_ms = await submit_served(engine, decoded.rgb, settings, wait=wait, timings=engine_timings)
    if clone_ms is not None:
        timings["clones"] = clone_ms  # its own time, spent beside the inference's
    queue_wait = engine_timings.get("queue_wait", 0.0)
    timings["queue_wait"] = queue_wait
    timings["inference"] = round(_ms(started) - queue_wait, 2)
    return await asyncio.to_thread(_finish, decoded, heatmap, engine, settings, timings, keep_photo, clones)


async def submit_served(engine: Engine, rgb: np.ndarray, settings: Settings, *, wait: bool = False,
                        timings: dict | None = None) -> tuple[np.ndarray, CloneResult | None, float | None]:
    """(heatmap, clones, the search's milliseconds): the model through the engine's queue and,
    where SPAN_CLONES is on, the clone search beside it under the same place in the queue
    (Engine.submit_beside); (heatmap, None, None) where it is off. served_prediction folds them."""
    if not settings.clones:
        return await engine.submit(rgb, wait=wait, timings=timings), None, None

    def search() -> tuple[CloneResult, float]:
        began = time.perf_counter()
        return find_clones(rgb), _ms(began)

    heatmap, (found, milliseconds) = await engine.submit_beside(rgb, search, wait=wait, timings=timings)
    return heatmap, found, milliseconds


async def decode_async(data: bytes, settings: Settings, decode_slots: asyncio.Semaphore | None) -> DecodedImage:
    """decode_image in a worker thread, at most `decode_slots` at once (memory)."""
    if decode_slots is None:
        return await asyncio.to_thread(decode_image, data, max_pixels=settings.max_pixels, min_side=settings.min_side)
    async with decode_slots:
        return await asyncio.to_thread(decode_image, data, max_pixels=settings.max_pixels, min_side=settings.min_side)


def served_prediction(rgb: np.ndarray, heatmap: np.ndarray, clones: bool,
                      found: CloneResult | None = None) -> tuple[np.ndarray, float, CloneResult | None]:
    """(map, image score, clones) as answered: the model's map and score, with the clones in the
    photo folded in when `clones` is on (spancore.clones.fold_in); `found`: the search's result
    when it already ran (beside the model), else it runs here."""
    score = image_score(heatmap)
    if not clones:
        return heatmap, score, None
    found = find_clones(rgb) if found is None else found
    folded, score = fold_in(heatmap, score, found)
    return folded, score, found


def _finish(
    decoded: DecodedImage, heatmap: np.ndarray, engine: Engine, settings: Settings, timings: dict, keep_photo: bool,
    found: CloneResult | None = None,
) -> Analysis:
    started = time.perf_counter()
    heatmap, score, clones = served_prediction(decoded.rgb, heatmap, settings.clones, found)
    if clones is not None and found is None:
        timings["clones"] = _ms(started)
    beside = ("clones",) if found is not None else ()  # the search ran beside the model: inside "inference"
    timings["total"] = _total(timings, beside)
    return Analysis(
        heatmap=heatmap,
        score=score,
        tampered_fraction=tampered_fraction(heatmap, engine.threshold, engine.relative_cut),
        threshold=engine.threshold,
        relative_cut=engine.relative_cut,
        image_threshold=engine.image_threshold,
        metadata=decoded.metadata,
        model=engine.manifest.model_info(),
        timings_ms=timings,
        rgb=decoded.rgb if keep_photo else None,
        clones=None if clones is None else clones.as_json(),
        beside=beside,
    )


def _total(timings: dict, beside: tuple[str, ...]) -> float:
    """The stages' times in turn, without "total" itself and the stages that ran beside another."""
    return round(sum(value for name, value in timings.items() if name != "total" and name not in beside), 2)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
