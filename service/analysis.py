"""One image -> one `Analysis`: decode, heatmap, image score, tampered fraction, timings.

Shared by the HTTP service (async, through the engine's queue), `span scan` and
`span evaluate` (sync). The JSON form is the one in docs/architecture.md.

Image score: the mean of the top 1 % of the map's pixel probabilities (at least one
pixel). A single hot pixel cannot raise it much, a manipulated region covering 1 % of
the photo or more lifts it to that region's probability, and the map's size does not
matter because it is a fraction. It is a score in [0, 1], not a calibrated probability.
"""
from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from service.decode import DecodedImage, ImageMetadata, decode_image, declared_pixels
from service.engine import Engine, Overloaded
from service.render import heatmap_png
from service.settings import Settings

SCORE_TOP_FRACTION = 0.01


def image_score(heatmap: np.ndarray) -> float:
    """Mean of the top SCORE_TOP_FRACTION of the map's values: how likely the photo was edited."""
    values = np.asarray(heatmap, dtype=np.float32).ravel()
    if values.size == 0:
        raise ValueError("empty heatmap")
    k = max(1, math.ceil(values.size * SCORE_TOP_FRACTION))
    top = np.partition(values, values.size - k)[values.size - k :]
    return float(np.clip(top.mean(dtype=np.float64), 0.0, 1.0))


def tampered_fraction(heatmap: np.ndarray, threshold: float) -> float:
    """Fraction of pixels at or above the decision threshold."""
    return float(np.count_nonzero(heatmap >= threshold) / heatmap.size)


@dataclass
class Analysis:
    heatmap: np.ndarray  # float32 [height, width] in 0..1, the photo as displayed
    score: float
    tampered_fraction: float
    threshold: float
    metadata: ImageMetadata
    model: dict
    timings_ms: dict = field(default_factory=dict)
    rgb: np.ndarray | None = None  # the decoded photo, kept only when an overlay is wanted

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
            "width": self.width,
            "height": self.height,
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
        self.timings_ms["total"] = round(sum(self.timings_ms.values()), 2)


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


class PixelBudget:
    """Bounds the decoded pixels held by images in flight, from decoding to their heatmap.

    The queue bounds how many images wait; without this, each of them could hold a photo
    at the pixel limit (a 200 KB PNG can declare 80 M pixels, about 1.6 GB decoded and
    analysed), so a handful of small uploads could exhaust memory. Each image reserves its
    header's width x height before it is decoded and releases it once its map is made.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, pixels: int, *, wait: bool, retry_after_s: int) -> AsyncIterator[None]:
        pixels = min(pixels, self.limit)  # one photo at the limit always fits when alone
        async with self._changed:
            if not wait and self.held + pixels > self.limit:
                error = Overloaded(retry_after_s)
                error.args = (f"too many image pixels in flight ({self.held} held, limit {self.limit}); "
                              f"retry in {retry_after_s} s",)
                raise error
            await self._changed.wait_for(lambda: self.held + pixels <= self.limit)
            self.held += pixels
        try:
            yield
        finally:
            async with self._changed:
                self.held -= pixels
                self._changed.notify_all()


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
    heatmap = await engine.submit(decoded.rgb, wait=wait, timings=engine_timings)
    queue_wait = engine_timings.get("queue_wait", 0.0)
    timings["queue_wait"] = queue_wait
    timings["inference"] = round(_ms(started) - queue_wait, 2)
    return await asyncio.to_thread(_finish, decoded, heatmap, engine, settings, timings, keep_photo)


async def decode_async(data: bytes, settings: Settings, decode_slots: asyncio.Semaphore | None) -> DecodedImage:
    """decode_image in a worker thread, at most `decode_slots` at once (memory)."""
    if decode_slots is None:
        return await asyncio.to_thread(decode_image, data, max_pixels=settings.max_pixels, min_side=settings.min_side)
    async with decode_slots:
        return await asyncio.to_thread(decode_image, data, max_pixels=settings.max_pixels, min_side=settings.min_side)


def _finish(
    decoded: DecodedImage, heatmap: np.ndarray, engine: Engine, settings: Settings, timings: dict, keep_photo: bool
) -> Analysis:
    timings["total"] = round(sum(timings.values()), 2)
    return Analysis(
        heatmap=heatmap,
        score=image_score(heatmap),
        tampered_fraction=tampered_fraction(heatmap, settings.threshold),
        threshold=settings.threshold,
        metadata=decoded.metadata,
        model=engine.manifest.model_info(),
        timings_ms=timings,
        rgb=decoded.rgb if keep_photo else None,
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
