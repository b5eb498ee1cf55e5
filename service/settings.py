"""The service's configuration: one pydantic-settings class, environment prefix `SPAN_`.

Nothing else in the project reads the environment. Every field below is documented in
README.md ("Configuration"); list-valued settings take JSON, e.g.
`SPAN_PROVIDERS='["CPUExecutionProvider"]'`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPAN_", extra="ignore", frozen=True)

    # --- model and ONNX Runtime -------------------------------------------------------
    model_dir: Path = Field(
        REPO_ROOT / "weights",
        description="Folder holding span.onnx and manifest.json (sha256-verified at start-up).",
    )
    providers: list[str] = Field(
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference. Unavailable ones are "
        "skipped and the session falls back to CPU; /health/ready is 503 unless the provider in use "
        "is one of these.",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ORT intra-op threads for one inference; 0 lets ORT use every physical core."
    )
    intra_op_spinning: bool = Field(
        False,
        description="Let ORT's intra-op threads busy-wait between operators instead of sleeping. "
        "Off by default: inside the server the cores are shared with decoding, PNG encoding and the "
        "event loop, and off measured faster there (docs/performance.md, server threads lever).",
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="Which model file runs. 'int8' (span.int8.onnx: Featex's 3x3 convolutions quantised, "
        "~1.6x faster on CPU) or 'fp32' (span.onnx). 'auto': int8 on the CPU provider when the manifest "
        "records int8 and fp32 scores on a benchmark with a pixel-AUC drop below 0.01, else fp32.",
    )
    warmup: bool = Field(True, description="Run warm-up inferences before reporting ready.")
    warmup_runs: int = Field(
        1, ge=1, le=1000,
        description="How many warm-up inferences run before ready. The first pays for ORT's allocations; "
        "more let the allocator and the CPU's caches settle before an orchestrator routes traffic.",
    )

    # --- input limits ------------------------------------------------------------------
    max_upload_bytes: int = Field(
        50 * MiB, gt=0, description="Largest request body of POST /v1/localize (413 beyond, counted while streaming)."
    )
    max_scan_bytes: int = Field(
        256 * MiB, gt=0, description="Largest request body of POST /v1/scan, all images together."
    )
    max_body_bytes_in_flight: int = Field(
        512 * MiB, gt=0, description="Most request-body bytes held at once by all requests being received or "
        "handled; beyond it the answer is 503 with Retry-After (a declared Content-Length is checked before "
        "reading). Never less than the route's own limit, so one request at its limit always fits alone."
    )
    max_pixels: int = Field(
        80_000_000,
        gt=0,
        description="Largest width x height accepted, read from the file header before any pixel is "
        "decoded (decompression bombs -> 413).",
    )
    min_side: int = Field(8, ge=1, description="Smallest width or height accepted (422 below).")
    max_batch_items: int = Field(32, ge=1, description="Most images in one POST /v1/scan (413 beyond).")
    max_pixels_in_flight: int = Field(
        160_000_000,
        gt=0,
        description="Most decoded pixels held at once by images being decoded, queued or analysed (20-30 "
        "bytes each at peak), reserved from each file's header before decoding; beyond it "
        "POST /v1/localize answers 503 with Retry-After and /v1/scan items wait. Never less than max_pixels.",
    )
    decode_workers: int = Field(
        4, ge=1, description="Images decoded at the same time; bounds the memory held by decoded pixels."
    )
    layer_workers: int = Field(
        2, ge=1, description="Images whose forensic layers (POST /v1/analyze) are computed at the same time; "
        "each takes about one CPU core while it runs, others wait their turn."
    )

    # --- queue and dynamic batching ------------------------------------------------------
    queue_size: int = Field(
        64, ge=1, description="Images admitted to the inference queue (waiting or running). When full, "
        "POST /v1/localize answers 503 with Retry-After at once."
    )
    max_batch_size: int = Field(4, ge=1, description="Most same-shaped inputs run in one ORT call.")
    # ORT's arena grows to the largest call it has run (about 0.5 GiB a 1024x1024 input on CPU):
    # this bounds it by pixels, so that four 1024x1024 tiles never run at once by default.
    max_batch_pixels: int = Field(
        2_200_000, ge=4096, description="Most input pixels in one ORT call (at least one input always runs)."
    )
    max_queue_delay_ms: float = Field(
        5.0, ge=0, description="How long the batcher waits for more same-shaped inputs to fill a batch."
    )
    retry_after_s: int = Field(2, ge=1, description="Retry-After header value of a 503 from a full queue.")
    request_timeout_s: float = Field(
        300.0, gt=0, description="Longest one image may wait for its heatmap (queue + inference) before a 504."
    )

    # --- large photos --------------------------------------------------------------------
    # Default chosen by accuracy on full-size forgeries within 5 s for 12 MP (bench/large_policy.py,
    # README "Large photos"): with the shipped weights one pass at 4 MP beats 1 MP on 14 of 16
    # held-out camera splices (+0.020 pixel AUC) in 2.3 s for 12 MP; tiles do not help. The price
    # is memory: ORT's arena grows to the working size, 0.6 -> 2.0 GiB (bench/working_size.py;
    # the Kubernetes pod's limit is sized for it, tests/unit/deploy/test_k8s.py checks).
    large_image_policy: Literal["resize", "tile"] = Field(
        "resize",
        description="'resize': photos above max_working_pixels are downscaled to it for the network and "
        "the map is upscaled back (fast, coarser). 'tile': the photo, first downscaled to max_tiled_pixels "
        "if larger, is analysed in overlapping tile_size tiles (finer, slower).",
    )
    max_working_pixels: int = Field(
        4 * 1024 * 1024, ge=4096, description="'resize' policy: pixels the network sees at most (4 MP); "
        "ORT's memory grows with it, about 0.13 GiB + 480 bytes per working pixel once a photo this large "
        "has been analysed.",
    )
    tile_size: int = Field(1024, ge=64, description="'tile' policy: tile width and height in pixels.")
    tile_overlap: int = Field(128, ge=0, description="'tile' policy: overlap between neighbouring tiles.")
    max_tiled_pixels: int = Field(
        2_000_000, ge=4096, description="'tile' policy: photos larger than this are downscaled to it first."
    )

    # --- answers ---------------------------------------------------------------------------
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Decision threshold: a pixel counts as tampered at or above it. "
        "Default: the model's operating point from its manifest (chosen on synthetic validation "
        "forgeries at training time), 0.5 for a model without one."
    )
    image_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Image decision: a photo is worth a closer look when its image score is at "
        "or above it. Default: the model's, chosen on synthetic validation for balanced accuracy between forged and "
        "untouched photos; else the pixel decision threshold."
    )
    relative_cut: float | None = Field(
        None, ge=0.0, le=1.0, description="Peak-relative cut: a pixel is also marked only if it reaches this fraction "
        "of its map's peak (spancore.scoring.decision_mask; 0 turns it off). Default: the model's, chosen on "
        "synthetic validation beside the threshold, 0 for a model without one."
    )

    clones: bool = Field(
        True, description="Look for parts of the photo copied onto itself by a plain shift (spancore.clones: the "
        "noise residual's self-correlation) and add what is found to the map and the image score. A copy-move "
        "carries its host's own history, so the model alone scores it like the untouched photo. Costs about "
        "0.4-0.55 s of one core for a 1024x768 photo (up to ~1.3 s for one full of repeated structure), beside the "
        "model; photos above 2 MP are binned to 2 MP first."
    )

    # --- connections (slow and idle clients) ------------------------------------------------
    header_timeout_s: float = Field(
        10.0, gt=0, description="Longest time from a connection's opening (or its previous answer) to the end "
        "of a request's headers; slower connections are closed (slowloris). uvicorn has no such limit itself."
    )
    body_timeout_s: float = Field(
        120.0, gt=0, description="Longest time to receive one request's body, from the request's start; a "
        "slower upload gets 408 and the connection is closed."
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="An idle keep-alive connection is closed after this many seconds (uvicorn "
        "timeout_keep_alive)."
    )

    # --- shutdown ----------------------------------------------------------------------------
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM: how long in-flight requests may take to finish."
    )
    drain_delay_s: float = Field(
        0.0, ge=0, description="On SIGTERM: how long /health/ready answers 503 before the listener closes "
        "(lets a load balancer stop routing first)."
    )

    # --- access (README "Security") ----------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""), description="API keys, comma-separated; each `KEY` or `LABEL:KEY` (the label is the key's "
        "id in logs and metrics, else the first 8 hex digits of its sha256). Empty, and no api_keys_file: the "
        "service is open to anyone who can reach it (said once at start-up)."
    )
    api_keys_file: Path | None = Field(
        None, description="A file with one key (`KEY` or `LABEL:KEY`) per line, `#` comments and blank lines "
        "ignored: a Docker or Kubernetes secret. Added to api_keys."
    )
    metrics_require_key: bool = Field(
        False, description="Put GET /metrics behind the API keys too (open by default for Prometheus)."
    )
    rate_limit_per_minute: float = Field(
        600.0, ge=0, description="Requests per minute one client (API key id, or client address when keys are off) "
        "may make to the keyed routes (/v1/*), over the burst; beyond it 429 with Retry-After. 0 turns it off. "
        "Held in this process: across replicas the ingress or proxy holds the shared limit."
    )
    rate_limit_burst: int = Field(
        120, ge=1, description="Requests one client may make at once before rate_limit_per_minute applies."
    )
    frame_ancestors: str = Field(
        "'none'", description="CSP frame-ancestors: who may embed the page and the API in a frame. "
        "'none' by default; e.g. `'self' https://intranet.example.org` to allow embedding."
    )
    cors_origins: list[str] = Field(
        [], description='Origins allowed to call the API from another site\'s page (CORS), as JSON, e.g. '
        '`SPAN_CORS_ORIGINS=\'["https://newsroom.example.org"]\'`. Empty: CORS off (same origin only).'
    )

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _no_file(cls, value: object) -> object:
        """SPAN_API_KEYS_FILE= (empty) means no file, e.g. to run the Docker image open on purpose."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.tile_overlap * 2 >= self.tile_size:
            raise ValueError("tile_overlap must be less than half of tile_size")
        if not self.providers:
            raise ValueError("providers must name at least one execution provider")
        return self


class SettingsError(ValueError):
    """SPAN_* variables the service cannot run with; the message names each and what is wrong."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once. A bad value is a SettingsError
    naming the variable (SPAN_THRESHOLD=2: ...), which the commands print as one line."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError("; ".join(_problem(item) for item in error.errors())) from None


def _problem(item: dict) -> str:
    field = ".".join(str(part) for part in item.get("loc", ()))
    if not field:  # a check across fields (Settings._check)
        return str(item.get("msg", "invalid settings")).removeprefix("Value error, ")
    value = item.get("input")
    shown = f"={value}" if isinstance(value, str | int | float) else ""
    return f"SPAN_{field.upper()}{shown}: {item.get('msg')}"


# --- the stated memory bound ----------------------------------------------------------------
# Measured with bench/working_size.py (a real `span serve`, 12 MP and 50 MP JPEGs, 1 and 4
# clients, peak RSS): the runtime and model take ~0.13 GiB, ONNX Runtime's arena grows to the
# largest input it has run (~480 bytes per working pixel: 0.6 GiB at 1 MP, 2.0 GiB at 4 MP),
# and each decoded pixel in flight peaks at ~50 bytes (photo, working copy, native-resolution
# cues, full-size map). docs/reliability.md "Memory bound"; the Kubernetes limit holds it.
RUNTIME_BYTES = 140_000_000
ARENA_BYTES_PER_WORKING_PIXEL = 480
PEAK_BYTES_PER_PIXEL_IN_FLIGHT = 50


def memory_bound_bytes(settings: Settings) -> int:
    """The most resident memory these settings let one server process reach (the stated bound)."""
    working = settings.max_working_pixels if settings.large_image_policy == "resize" else settings.max_batch_pixels
    pixels_in_flight = max(settings.max_pixels_in_flight, settings.max_pixels)
    return (RUNTIME_BYTES + ARENA_BYTES_PER_WORKING_PIXEL * working + settings.max_body_bytes_in_flight
            + PEAK_BYTES_PER_PIXEL_IN_FLIGHT * pixels_in_flight)
