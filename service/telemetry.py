"""Prometheus telemetry (prometheus-client, default registry), served as text at GET /metrics.

Called "telemetry" in code; "scores" are what `span evaluate` measures (service/evaluation/).

Names follow Prometheus conventions: `_total` counters, `_seconds` and `_bytes` units.
Route labels are route templates (`/v1/localize`), never raw paths, so cardinality is fixed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, Info

if TYPE_CHECKING:
    from spancore.weights import WeightsManifest

# Latency of whole requests: from tens of ms (health) to minutes (a batch of large photos).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

REQUESTS = Counter("span_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "span_http_request_duration_seconds", "HTTP request latency", ["route", "method"], buckets=_LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("span_http_requests_in_flight", "HTTP requests being handled")
RECEIVED_BYTES = Counter("span_http_received_bytes_total", "Request body bytes received", ["route"])

QUEUE_DEPTH = Gauge("span_queue_depth", "Images admitted to the inference queue (waiting or running)")
QUEUE_REJECTIONS = Counter("span_queue_rejections_total", "Images refused because the queue was full (503)")
QUEUE_WAIT_SECONDS = Histogram(
    "span_queue_wait_seconds", "Time an image waited in the queue before its batch ran", buckets=_LATENCY_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "span_inference_seconds", "Duration of one ONNX Runtime call (one batch)", buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("span_batch_size", "Inputs per ONNX Runtime call", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64))
IMAGES = Counter(
    "span_images_processed_total", "Images through /v1/localize and /v1/scan, by outcome", ["outcome", "code"]
)
RATE_LIMITED = Counter(
    "span_rate_limited_total", "Requests refused with 429 (over the client's rate), by API key id "
    "('anonymous' while keys are off)", ["key_id"]
)
AUTH_REFUSED = Counter("span_auth_refused_total", "Requests refused with 401, by reason (missing, invalid)", ["reason"])
LAYER_SECONDS = Histogram(
    "span_layer_duration_seconds", "Time one forensic layer took on one image (POST /v1/analyze)", ["layer"],
    buckets=_LATENCY_BUCKETS,
)
MODEL_INFO = Info("span_model", "The model being served")
READY = Gauge("span_ready", "1 when /health/ready answers 200")


def model_info(manifest: WeightsManifest, provider: str) -> None:
    MODEL_INFO.info({**{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in manifest.model_info().items()},
                     "provider": provider})


def image_done(code: str | None = None) -> None:
    """Count one image: code None for a heatmap delivered, else the error code."""
    if code is None:
        IMAGES.labels(outcome="ok", code="").inc()
    else:
        IMAGES.labels(outcome="error", code=code).inc()
