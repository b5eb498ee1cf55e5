"""The inference engine: one ONNX Runtime session, the large-image policy, and a dynamic batcher.

    engine = Engine.from_settings(settings)   # verify the manifest, open the session, start the batcher
    engine.warm_up()                          # one inference; `engine.ready` after this
    heatmap = engine.predict(rgb)             # sync, in the caller's thread (scan, evaluate)
    heatmap = await engine.submit(rgb)        # async: bounded admission + queue + dynamic batcher (HTTP)

Both take RGB uint8 [H, W, 3] and give float32 [H, W] in 0..1 at the same size.

Large images (settings.large_image_policy):
- "resize": above `max_working_pixels` the photo is downscaled (area-preserving) for the
  network and the map is upscaled back. Cost is bounded by max_working_pixels whatever the
  photo; fine detail and faint high-frequency traces are lost in proportion to the scale.
- "tile": the photo is analysed at native resolution in overlapping `tile_size` tiles whose
  maps are blended with linear ramps in the overlaps; photos above `max_tiled_pixels` are
  first downscaled to it. Cost grows with the pixel count (tiles of one photo share a shape,
  so they batch together); memory is bounded by one batch of tiles plus two float maps.

Batching: requests enter a queue that admits at most `queue_size` images (waiting or
running). A batcher thread takes the first waiting item, collects more for up to
`max_queue_delay_ms` or until `max_batch_size` inputs, groups them by shape (only equal
shapes can share an ORT call), runs each group in chunks of `max_batch_size` and hands
each caller its own maps back on its event loop.
"""
from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from service import telemetry
from service.settings import Settings
from spancore.contract import CUES_NAME, INPUT_NAME, OUTPUT_NAME
from spancore.cues import BLOCK, CUES_VERSION, compute_cues
from spancore.weights import WeightsManifest, load_manifest

T = TypeVar("T")

log = logging.getLogger("span.engine")


class EngineError(RuntimeError):
    """The engine cannot answer (not an input problem)."""


class Overloaded(EngineError):
    """The queue is full; the caller should retry after `retry_after_s` seconds."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"the inference queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class InferenceTimeout(EngineError):
    pass


class EngineStopped(EngineError):
    pass


@dataclass
class _Plan:
    """How one photo is fed to the network: the inputs and how to put their maps back together."""

    height: int
    width: int
    work_height: int
    work_width: int
    inputs: dict[str, np.ndarray]  # the ONNX feeds: "image" float32 [n, 3, h, w] (+ "cues" [n, C, hb, wb])
    origins: list[tuple[int, int]] | None = None  # tile top-left corners (y, x) in the working image
    cue_ms: float = 0.0  # time spent computing the cues


@dataclass
class _Work:
    inputs: dict[str, np.ndarray]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: threading.Event = field(default_factory=threading.Event)
    timings: dict | None = None

    @property
    def count(self) -> int:
        return self.inputs[INPUT_NAME].shape[0]

    def deliver(self, setter, value) -> None:
        """Hand a result to the caller's loop; a caller whose loop has gone is simply dropped."""
        try:
            self.loop.call_soon_threadsafe(setter, self.future, value)
        except RuntimeError:  # event loop closed: nobody is waiting any more
            pass

    @property
    def shape(self) -> tuple:
        """Works batch together when every feed has the same shape past the batch axis."""
        return tuple(array.shape[1:] for array in self.inputs.values())


_STOP = object()


class Engine:
    def __init__(self, session: ort.InferenceSession, manifest: WeightsManifest, settings: Settings):
        self.session = session
        self.manifest = manifest
        self.settings = settings
        self.providers_in_use: list[str] = session.get_providers()
        # A model with a second input wants spancore's fixed cues, computed here from the photo
        # at its native resolution (before any resize: JPEG and noise traces live there).
        self.takes_cues = CUES_NAME in {i.name for i in session.get_inputs()}
        self.warmed = False
        self._admitted = 0
        self._admitted_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._batcher = threading.Thread(target=self._batch_loop, name="span-batcher", daemon=True)
        self._batcher.start()
        telemetry.model_info(manifest, self.provider)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        manifest = running_manifest(settings)
        session = create_session(manifest.onnx_path, settings.providers, settings.intra_op_threads,
                                 spinning=settings.intra_op_spinning)
        _check_contract(session, manifest)
        return cls(session, manifest, settings)

    @property
    def threshold(self) -> float:
        """The decision threshold of every answer: SPAN_THRESHOLD, else the model's operating point."""
        return self.manifest.decision_threshold(self.settings.threshold)

    @property
    def image_threshold(self) -> float:
        """The image decision's threshold: SPAN_IMAGE_THRESHOLD, else the model's, else `threshold`."""
        return self.manifest.decision_image_threshold(self.settings.image_threshold, self.threshold)

    @property
    def relative_cut(self) -> float:
        """The peak-relative cut of every answer: SPAN_RELATIVE_CUT, else the model's, else 0."""
        return self.manifest.decision_relative_cut(self.settings.relative_cut)

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the first one ORT kept)."""
        return self.providers_in_use[0]

    @property
    def provider_as_configured(self) -> bool:
        return self.provider in self.settings.providers

    @property
    def ready(self) -> bool:
        return self.warmed and self.provider_as_configured and not self._stopping

    @property
    def queue_depth(self) -> int:
        return self._admitted

    @property
    def has_capacity(self) -> bool:
        return self._admitted < self.settings.queue_size

    def warm_up(self) -> float:
        """Inferences at the working size (settings.warmup_runs), so the first request does not pay
        for allocation."""
        side = int(min(512, math.sqrt(self.settings.max_working_pixels)))
        photo = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        started = time.perf_counter()
        for _ in range(self.settings.warmup_runs):
            self.predict(photo)
        self.warmed = True
        seconds = time.perf_counter() - started
        log.info("warm-up on %s: %d inferences, %.2f s", self.provider, self.settings.warmup_runs, seconds)
        return seconds

    # ------------------------------------------------------------------ inference
    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> float32 [H, W] in 0..1, in the caller's thread."""
        plan = self.plan(rgb)
        return self.assemble(plan, self._run_chunks(plan.inputs))

    def _run_chunks(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """ORT calls of at most max_batch_size inputs and max_batch_pixels pixels each, concatenated."""
        count, _, height, width = feeds[INPUT_NAME].shape
        step = max(1, min(self.settings.max_batch_size, self.settings.max_batch_pixels // (height * width)))
        return np.concatenate(
            [self._run({k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, count, step)]
        )

    async def submit(self, rgb: np.ndarray, *, wait: bool = False, timings: dict | None = None) -> np.ndarray:
        """Like predict, through the bounded queue and the dynamic batcher.

        wait=False: raise Overloaded at once when `queue_size` images are already admitted.
        wait=True: wait for a free place instead (used for the items of one batch request).
        timings, when given, receives "queue_wait" and "inference" in milliseconds.
        """
        async with self.admitted(wait=wait):
            return await self._infer(rgb, timings)

    async def submit_beside(self, rgb: np.ndarray, beside: Callable[[], T], *, wait: bool = False,
                            timings: dict | None = None) -> tuple[np.ndarray, T]:
        """submit, with `beside` (CPU work on the same photo: the clone search) run in a worker
        thread while the model works, under the same place in the queue: a refused photo starts
        neither, so an overload costs no search. Returns (heatmap, what `beside` returned)."""
        async with self.admitted(wait=wait):
            side = asyncio.ensure_future(asyncio.to_thread(beside))
            try:
                heatmap = await self._infer(rgb, timings)
            except BaseException:
                # A worker thread cannot be stopped: it finishes on its own, its result (or error) dropped.
                side.add_done_callback(lambda done: done.cancelled() or done.exception())
                raise
            return heatmap, await side

    async def _infer(self, rgb: np.ndarray, timings: dict | None) -> np.ndarray:
        plan = await asyncio.to_thread(self.plan, rgb)
        if timings is not None and self.takes_cues:
            timings["cues"] = plan.cue_ms
        loop = asyncio.get_running_loop()
        work = _Work(plan.inputs, loop, loop.create_future(), timings=timings)
        self._queue.put(work)
        telemetry.QUEUE_DEPTH.set(self._admitted)
        try:
            outputs = await asyncio.wait_for(asyncio.shield(work.future), self.settings.request_timeout_s)
        except TimeoutError:
            work.abandoned.set()
            raise InferenceTimeout(
                f"no heatmap within {self.settings.request_timeout_s:.0f} s (queue + inference)"
            ) from None
        except asyncio.CancelledError:
            work.abandoned.set()  # the client went away: skip the work if it has not started
            raise
        return await asyncio.to_thread(self.assemble, plan, outputs)

    @asynccontextmanager
    async def admitted(self, *, wait: bool = False) -> AsyncIterator[None]:
        """Hold a place in the queue for image work done outside the model (the forensic layers of
        POST /v1/analyze), so that the queue bounds all image work in flight; Overloaded when full."""
        await self._admit(wait)
        telemetry.QUEUE_DEPTH.set(self._admitted)
        try:
            yield
        finally:
            with self._admitted_lock:
                self._admitted -= 1
            telemetry.QUEUE_DEPTH.set(self._admitted)

    async def _admit(self, wait: bool) -> None:
        while True:
            if self._stopping:
                raise EngineStopped("the service is shutting down")
            with self._admitted_lock:
                if self._admitted < self.settings.queue_size:
                    self._admitted += 1
                    return
            if not wait:
                telemetry.QUEUE_REJECTIONS.inc()
                raise Overloaded(self.settings.retry_after_s)
            await asyncio.sleep(0.02)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One ORT call: feeds (image float32 [n, 3, h, w], cues) -> float32 [n, h, w]."""
        started = time.perf_counter()
        (heatmap,) = self.session.run([OUTPUT_NAME], {k: np.ascontiguousarray(v) for k, v in feeds.items()})
        telemetry.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        telemetry.BATCH_SIZE.observe(feeds[INPUT_NAME].shape[0])
        return np.clip(heatmap[:, 0], 0.0, 1.0)

    # ------------------------------------------------------------------ batcher thread
    def _batch_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            size = first.count
            deadline = time.perf_counter() + self.settings.max_queue_delay_ms / 1000
            stop_after = False
            while size < self.settings.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
                size += item.count
            self._run_batch(batch)
            if stop_after:
                self._queue.put(_STOP)

    def _run_batch(self, batch: list[_Work]) -> None:
        groups: dict[tuple[int, int], list[_Work]] = {}
        for work in batch:
            if not work.abandoned.is_set():
                groups.setdefault(work.shape, []).append(work)
        for works in groups.values():
            started = time.perf_counter()
            for work in works:
                telemetry.QUEUE_WAIT_SECONDS.observe(started - work.enqueued)
            try:
                stacked = works[0].inputs if len(works) == 1 else {
                    name: np.concatenate([w.inputs[name] for w in works]) for name in works[0].inputs}
                outputs = self._run_chunks(stacked)
            except Exception as exc:  # a model failure fails these callers, not the batcher
                log.exception("inference failed for a batch of %d", len(works))
                for work in works:
                    work.deliver(_set_exception, EngineError(f"inference failed: {exc}"))
                continue
            finished = time.perf_counter()
            offset = 0
            for work in works:
                if work.timings is not None:
                    work.timings["queue_wait"] = round((started - work.enqueued) * 1000, 2)
                    work.timings["inference"] = round((finished - started) * 1000, 2)
                part = outputs[offset : offset + work.count]
                offset += work.count
                work.deliver(_set_result, part)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, let the batcher finish what is queued, then stop it."""
        self._stopping = True
        self._queue.put(_STOP)
        self._batcher.join(timeout)

    # ------------------------------------------------------------------ large-image policy
    def plan(self, rgb: np.ndarray) -> _Plan:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        s = self.settings
        height, width = rgb.shape[:2]
        limit = s.max_working_pixels if s.large_image_policy == "resize" else s.max_tiled_pixels
        work = rgb
        if height * width > limit:
            scale = math.sqrt(limit / (height * width))
            size = (max(1, int(width * scale)), max(1, int(height * scale)))
            work = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        wh, ww = work.shape[:2]
        started = time.perf_counter()
        if s.large_image_policy == "resize" or (wh <= s.tile_size and ww <= s.tile_size):
            feeds = {INPUT_NAME: _to_nchw(work[None])}
            if self.takes_cues:  # from the photo as given: the network sees it resized, the cues do not
                feeds[CUES_NAME] = compute_cues(rgb)[None]
            return _Plan(height, width, wh, ww, feeds, cue_ms=_ms_since(started))
        th, tw = min(s.tile_size, wh), min(s.tile_size, ww)
        # With cues, tiles start on the 8x8 grid (so each tile's cues are a slice of the photo's);
        # the last tile may then stop up to 7 pixels short of the edge: those take its last column.
        align = BLOCK if self.takes_cues else 1
        origins = [(y, x) for y in _starts(wh, th, s.tile_overlap, align) for x in _starts(ww, tw, s.tile_overlap, align)]
        feeds = {INPUT_NAME: _to_nchw(np.stack([work[y : y + th, x : x + tw] for y, x in origins]))}
        if self.takes_cues:
            cues = compute_cues(work)
            hb, wb = -(-th // BLOCK), -(-tw // BLOCK)
            feeds[CUES_NAME] = np.stack([cues[:, y // BLOCK : y // BLOCK + hb, x // BLOCK : x // BLOCK + wb]
                                         for y, x in origins])
        return _Plan(height, width, wh, ww, feeds, origins, cue_ms=_ms_since(started))

    def assemble(self, plan: _Plan, outputs: np.ndarray) -> np.ndarray:
        if plan.origins is None:
            heatmap = outputs[0]
        else:
            th, tw = outputs.shape[1:]
            window = np.outer(_ramp(th, self.settings.tile_overlap), _ramp(tw, self.settings.tile_overlap))
            total = np.zeros((plan.work_height, plan.work_width), np.float32)
            weight = np.zeros_like(total)
            for (y, x), tile in zip(plan.origins, outputs, strict=True):
                total[y : y + th, x : x + tw] += tile * window
                weight[y : y + th, x : x + tw] += window
            covered_h, covered_w = max(y for y, _ in plan.origins) + th, max(x for _, x in plan.origins) + tw
            heatmap = total[:covered_h, :covered_w] / weight[:covered_h, :covered_w]
            if (covered_h, covered_w) != total.shape:  # grid-aligned tiles: extend the last row/column
                heatmap = np.pad(heatmap, ((0, total.shape[0] - covered_h), (0, total.shape[1] - covered_w)), mode="edge")
        if heatmap.shape != (plan.height, plan.width):
            image = Image.fromarray(heatmap.astype(np.float32), mode="F")
            heatmap = np.asarray(image.resize((plan.width, plan.height), Image.Resampling.BILINEAR))
        return np.clip(heatmap, 0.0, 1.0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------- helpers
NVIDIA_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


def running_manifest(settings: Settings) -> WeightsManifest:
    """The sha256-verified manifest, describing the file these settings run (fp32 or int8)."""
    manifest = load_manifest(settings.model_dir)
    return manifest.with_precision(choose_precision(manifest, settings))


def choose_precision(manifest: WeightsManifest, settings: Settings) -> str:
    """settings.precision, with 'auto' resolved: int8 only on the CPU provider (a GPU runs the fp32
    model, or fp16, faster) and only when the manifest's own scores pass the int8 gate."""
    if settings.precision != "auto":
        return settings.precision
    gpu = nvidia_driver_present() and bool(NVIDIA_PROVIDERS & set(settings.providers) & set(ort.get_available_providers()))
    passed, reason = manifest.int8_gate()
    choice = "int8" if passed and not gpu else "fp32"
    log.info("precision auto -> %s (%s%s)", choice, reason, "; a GPU provider is available" if gpu else "")
    return choice


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is loaded (also true inside a container given a GPU)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def create_session(model_path: Path, providers: list[str], intra_op_threads: int, *,
                   spinning: bool = True) -> ort.InferenceSession:
    """An ORT session on the first usable provider of `providers`, falling back to CPU cleanly."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    if not spinning:  # idle intra-op threads sleep instead of busy-waiting (settings.intra_op_spinning)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the fallback below is reported once, by us
    available = set(ort.get_available_providers())
    driver = nvidia_driver_present()
    if not driver:
        # onnxruntime-gpu lists CUDA as available on any machine; without a driver, asking for
        # it only prints a library-loading error from ORT's global logger at every start.
        available -= NVIDIA_PROVIDERS
    wanted = [p for p in providers if p in available] or ["CPUExecutionProvider"]
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    # Photos come in every size, so cuDNN's default exhaustive algorithm search would re-run
    # (seconds) for each new shape; the heuristic choice is immediate and close in speed.
    per_provider = {"CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC"}}
    requested = [(p, per_provider[p]) if p in per_provider else p for p in wanted]
    try:
        session = ort.InferenceSession(str(model_path), options, providers=requested)
    except Exception as exc:  # e.g. CUDA libraries present in the wheel but no driver
        log.warning("providers %s failed (%s); falling back to CPUExecutionProvider", wanted, exc)
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    in_use = session.get_providers()
    if in_use[0] != providers[0]:
        expected = in_use[0] in providers and not driver  # the default on a CPU host
        (log.info if expected else log.warning)("configured providers %s; in use: %s%s", providers, in_use,
                                                " (no NVIDIA GPU here)" if expected else "")
    return session


def _check_contract(session: ort.InferenceSession, manifest: WeightsManifest) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    expected = [INPUT_NAME] + ([CUES_NAME] if manifest.cues else [])
    if inputs != expected or OUTPUT_NAME not in outputs or manifest.input_name != INPUT_NAME:
        raise EngineError(f"model does not follow the contract: inputs {inputs} (manifest: {expected}), outputs {outputs}")
    if manifest.cues and manifest.cues.get("version") != CUES_VERSION:
        raise EngineError(f"model wants cues {manifest.cues.get('version')!r}; this service computes {CUES_VERSION!r}")


def _to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 [n, h, w, 3] -> float32 [n, 3, h, w], values 0..255 (the network normalises itself)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def _starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Tile origins along one axis: a regular stride, the last tile flush with the edge (or, with
    align > 1, every origin a multiple of align and the last one as close to the edge as that allows)."""
    if length <= tile:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, stride))
    last = (length - tile) // align * align
    if not starts or last > starts[-1]:
        starts.append(last)
    return starts


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _ramp(length: int, overlap: int) -> np.ndarray:
    """Blending weights along one tile axis: linear rise over `overlap` pixels at both ends."""
    weights = np.ones(length, np.float32)
    if overlap > 0:
        rise = (np.arange(1, overlap + 1, dtype=np.float32)) / (overlap + 1)
        n = min(overlap, length // 2)
        weights[:n] = rise[:n]
        weights[length - n :] = np.minimum(weights[length - n :], rise[:n][::-1])
    return weights


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
