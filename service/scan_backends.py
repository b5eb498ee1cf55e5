"""How `span scan` analyses an image: the ONNX model in this process (LocalBackend) or a running
server's POST /v1/scan (ServerBackend, halving a batch the server finds too large)."""
from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from service.decode import InputError
from service.render import heatmap_png
from service.scan_inputs import ScanInput
from service.settings import Settings


@dataclass
class Finding:
    """One analysed image, whichever backend produced it."""

    heatmap: np.ndarray            # float32 [H, W] in 0..1
    heatmap_png: bytes             # the heatmap as the service renders it (8-bit greyscale PNG)
    score: float
    tampered_fraction: float
    width: int
    height: int
    threshold: float
    relative_cut: float
    image_threshold: float
    metadata: dict[str, Any]
    clones: dict[str, Any] | None  # the answer's clones (spancore.clones); None: not searched
    rgb: np.ndarray | None = None  # the decoded photo, when the backend already has it


class ScanFailure(Exception):
    """One image could not be analysed (code and message as the service words them)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(Protocol):
    model: dict[str, Any]     # {"name", "version", "sha256", "trained", "precision"}
    warning: str | None       # the model's caveat (untrained, weak budget), printed before scanning
    description: str

    def analyse(self, items: Sequence[tuple[ScanInput, bytes]]) -> Iterator[tuple[ScanInput, Finding | ScanFailure]]:
        ...


class LocalBackend:
    """The ONNX model in this process, through the same analysis the HTTP service uses."""

    batch_size = 1   # the engine parallelises one image across every core already

    def __init__(self, settings: Settings):
        from service.engine import running_manifest

        self.settings = settings
        # The manifest (sha256-verified) says which model would answer, at the precision the
        # engine will pick; the ONNX session itself is created only when an image needs it, so a
        # resumed scan with nothing left is instant.
        manifest = running_manifest(settings)
        self.model = manifest.model_info()
        self.warning = manifest.warning
        self.description = "local ONNX Runtime"
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from service.engine import Engine

            self._engine = Engine.from_settings(self.settings)
            self.description = f"local ONNX Runtime ({self._engine.provider})"
        return self._engine

    def analyse(self, items):
        from service.analysis import analyze_bytes

        for item, data in items:
            try:
                analysis = analyze_bytes(data, self.engine, self.settings, keep_photo=True)
            except InputError as exc:
                yield item, ScanFailure(exc.code, exc.message)
                continue
            except Exception as exc:   # one image the model chokes on must not end the scan
                yield item, ScanFailure("analysis_failed", f"{type(exc).__name__}: {exc}")
                continue
            yield item, Finding(
                heatmap=analysis.heatmap,
                heatmap_png=heatmap_png(analysis.heatmap),
                score=round(analysis.score, 6),   # the precision of the HTTP answers
                tampered_fraction=round(analysis.tampered_fraction, 6),
                width=analysis.width,
                height=analysis.height,
                threshold=analysis.threshold,
                relative_cut=analysis.relative_cut,
                image_threshold=analysis.image_threshold,
                metadata=analysis.metadata.as_json(),
                clones=analysis.clones,
                rgb=analysis.rgb,
            )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class ServerBackend:
    """A running `span serve`: batches of images to POST /v1/scan."""

    def __init__(self, url: str, *, batch_size: int, timeout_s: float, api_key: str | None = None):
        import httpx

        self.url = url.rstrip("/")
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=10.0), headers=headers)
        try:
            response = self.client.get("/v1/model")
        except httpx.HTTPError as exc:
            raise ScanFailure("server_unreachable", f"cannot reach {self.url}: {exc}") from None
        if response.status_code == 401:
            raise ScanFailure("unauthorized", f"{self.url} needs an API key: pass --api-key or set SPAN_API_KEY"
                              if not api_key else f"{self.url} refused the API key")
        if response.status_code != 200:
            raise ScanFailure("server_error", f"{self.url}/v1/model answered HTTP {response.status_code}")
        described = response.json()
        self.model = {k: described.get(k) for k in ("name", "version", "sha256", "trained", "precision")}
        self.warning = described.get("warning")
        self.description = f"server {self.url}"

    def analyse(self, items):
        yield from self._post(list(items))

    def _post(self, items: list[tuple[ScanInput, bytes]], busy_retries: int = 5):
        import httpx

        files = [("images", (item.local.name, data, "application/octet-stream")) for item, data in items]
        try:
            response = self.client.post("/v1/scan", files=files)
        except httpx.HTTPError as exc:
            raise ScanFailure("server_unreachable", f"request to {self.url}/v1/scan failed: {exc}") from None
        if response.status_code == 413 and len(items) > 1:
            # Too many images or bytes for one request: split, try the halves, and send smaller
            # batches from now on rather than being refused again and again.
            half = len(items) // 2
            self.batch_size = min(self.batch_size, half)
            yield from self._post(items[:half])
            yield from self._post(items[half:])
            return
        if response.status_code in (429, 503) and "Retry-After" in response.headers and busy_retries > 0:
            time.sleep(min(float(response.headers["Retry-After"]), 30.0))   # busy, not broken: wait our turn
            yield from self._post(items, busy_retries - 1)
            return
        body = _json_or_none(response)
        if response.status_code != 200:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            failure = ScanFailure(error.get("code", f"http_{response.status_code}"),
                                  error.get("message", f"the server answered HTTP {response.status_code}"))
            for item, _ in items:
                yield item, failure
            return
        answers = _scan_answers(body)
        by_index = {answer.get("index", i): answer for i, answer in enumerate(answers)}
        for index, (item, _) in enumerate(items):
            answer = by_index.get(index)
            if answer is None:
                yield item, ScanFailure("missing_answer", "the server's answer has no entry for this image")
            elif "error" in answer:
                yield item, ScanFailure(answer["error"].get("code", "error"), answer["error"].get("message", ""))
            else:
                yield item, _finding_from_answer(answer)

    def close(self) -> None:
        self.client.close()


def _json_or_none(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _scan_answers(body: Any) -> list[dict[str, Any]]:
    """The item list of a /v1/scan answer (a bare list, or under "results" / "items")."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("results", "items"):
            if isinstance(body.get(key), list):
                return body[key]
    raise ScanFailure("bad_answer", "the server's /v1/scan answer has no list of results")


def _finding_from_answer(answer: dict[str, Any]) -> Finding:
    png = base64.b64decode(answer["heatmap_png_base64"])
    with Image.open(io.BytesIO(png)) as image:
        heatmap = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    return Finding(
        heatmap=heatmap,
        heatmap_png=png,
        score=float(answer["score"]),
        tampered_fraction=float(answer["tampered_fraction"]),
        width=int(answer.get("width", heatmap.shape[1])),
        height=int(answer.get("height", heatmap.shape[0])),
        threshold=float(answer.get("threshold", 0.5)),
        relative_cut=float(answer.get("relative_cut", 0.0)),  # older servers: no cut
        image_threshold=float(answer.get("image_threshold", answer.get("threshold", 0.5))),
        metadata=answer.get("metadata") or {},
        clones=answer.get("clones"),  # older servers: not searched
    )
