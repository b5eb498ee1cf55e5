"""End to end: the real `span serve` process (uvicorn on a free port) with the committed model,
called over HTTP with real files from ../shared/data/photos/exif-samples."""
from __future__ import annotations

import base64
import io
import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import hostile
from spancore.scoring import decision_mask
from spancore.testing import EXIF_SAMPLES, ROOT, running_server
from spancore.weights import load_manifest

ORIENTATION = EXIF_SAMPLES / "jpg" / "orientation"
TIMEOUT = 180


@pytest.fixture(scope="module")
def api(live_server):
    with httpx.Client(base_url=live_server, timeout=TIMEOUT) as client:
        yield client


def _metrics(client: httpx.Client) -> dict[tuple, float]:
    text = client.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sum(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def _png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.mode == "L"
    return image


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def _alpha_png() -> bytes:
    photo = Image.open(EXIF_SAMPLES / "jpg" / "exif-org" / "canon-ixus.jpg").convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, np.uint8)
    alpha[: photo.height // 3] = 0
    photo.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------ health, model, schema
def test_health_model_and_schema(api):
    assert api.get("/health/live").json() == {"status": "alive"}
    ready = api.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["provider"] == "CPUExecutionProvider"
    model = api.get("/v1/model").json()
    manifest = __import__("json").loads((ROOT / "weights" / "manifest.json").read_text())
    # The answer names the file that runs: on the CPU provider with SPAN_PRECISION=auto, the int8
    # one exactly when the committed manifest's own scores pass the gate (worked out here, not
    # read back from the server's answer).
    configured = os.environ.get("SPAN_PRECISION", "auto")
    gate_passed, gate_reason = load_manifest(ROOT / "weights").int8_gate()
    assert model["precision"] == (configured if configured != "auto" else "int8" if gate_passed else "fp32")
    assert model["int8_gate"] == gate_reason
    running = "span.int8.onnx" if model["precision"] == "int8" else "span.onnx"
    assert model["sha256"] == manifest["files"][running]["sha256"]
    assert model["trained"] == manifest["trained"] and model["status"] == manifest["status"]
    assert model["provider"] == "CPUExecutionProvider"
    assert model["providers_configured"][-1] == "CPUExecutionProvider"
    if not manifest["trained"]:
        assert "UNTRAINED" in model["warning"]
    else:
        assert model["warning"] == manifest.get("warning") and model["training"] == manifest.get("training", {})
    schema = api.get("/openapi.json").json()
    assert {"/v1/localize", "/v1/scan", "/v1/model", "/health/live", "/health/ready", "/metrics"} <= set(schema["paths"])
    localize = schema["paths"]["/v1/localize"]["post"]
    assert {"multipart/form-data", "image/*"} <= set(localize["requestBody"]["content"])
    assert {"image/png", "image/jpeg", "application/json"} <= set(localize["responses"]["200"]["content"])
    assert {"413", "415", "422", "503"} <= set(localize["responses"])
    assert "example" in schema["components"]["schemas"]["LocalizeResult"]


# ------------------------------------------------------------------ one image
@pytest.mark.parametrize("orientation", range(1, 9))
def test_heatmap_matches_the_displayed_size_for_every_exif_orientation(api, orientation):
    path = ORIENTATION / f"landscape_{orientation}.jpg"
    stored = Image.open(path).size
    response = api.post("/v1/localize", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
    heatmap = _png(response)
    assert heatmap.size == (600, 450)  # displayed size; files 5-8 are stored 450x600
    assert stored == ((450, 600) if orientation >= 5 else (600, 450))
    assert 0 <= float(response.headers["x-score"]) <= 1
    assert response.headers["x-model-trained"] in ("true", "false")
    assert response.headers["x-clones-found"] == "false"  # searched (the default), nothing copied


def test_json_answer_via_accept_header_and_raw_body(api):
    path = ORIENTATION / "portrait_6.jpg"
    response = api.post("/v1/localize", content=path.read_bytes(), headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    answer = response.json()
    assert 0 <= answer["score"] <= 1 and 0 <= answer["tampered_fraction"] <= 1
    # the committed model's own operating point: the session server sets no SPAN_THRESHOLD
    manifest = load_manifest(ROOT / "weights")
    threshold, cut = manifest.decision_threshold(), manifest.decision_relative_cut()
    assert answer["threshold"] == threshold and answer["relative_cut"] == cut
    assert (answer["width"], answer["height"]) == (450, 600)
    heatmap = Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png_base64"])))
    assert heatmap.mode == "L" and heatmap.size == (450, 600)
    values = np.asarray(heatmap) / 255
    assert answer["tampered_fraction"] == pytest.approx(decision_mask(values, threshold, cut).mean(), abs=0.01)
    assert set(answer["model"]) == {"name", "version", "sha256", "trained", "precision"}
    assert {"decode", "queue_wait", "inference", "encode", "total"} <= set(answer["timings_ms"])
    meta = answer["metadata"]
    assert meta["format"] == "JPEG" and meta["orientation"] == 6 and meta["orientation_applied"] is True
    assert (meta["original_width"], meta["original_height"]) == (600, 450)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("", "png"), ("*/*", "png"), ("application/json", "json"), ("image/png, application/json;q=0.5", "png"),
     ("application/json, image/png;q=0.9", "json"), ("text/html,*/*;q=0.8", "png")],
)
def test_accept_header_negotiation(accept, expected):
    from service.routes.localize import preferred_format

    assert preferred_format(accept) == expected


def test_overlay_is_a_jpeg_of_the_displayed_photo(api):
    path = ORIENTATION / "landscape_8.jpg"
    response = api.post("/v1/localize?format=overlay", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (600, 450)


def test_heic_from_an_iphone(api):
    path = EXIF_SAMPLES / "heic" / "IMG_5195.HEIC"
    response = api.post("/v1/localize?format=json", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["width"], answer["height"]) == (2566, 3313)
    assert answer["metadata"]["format"] == "HEIF" and answer["metadata"]["camera"] == "Apple iPhone 11 Pro Max"
    assert Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png_base64"]))).size == (2566, 3313)


def test_png_with_alpha_and_tiff(api):
    response = api.post("/v1/localize?format=json", files={"image": ("cutout.png", _alpha_png())})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["has_alpha"] is True and response.json()["metadata"]["format"] == "PNG"
    tiff = EXIF_SAMPLES / "tiff" / "BSG1.tiff"
    heatmap = _png(api.post("/v1/localize", files={"image": (tiff.name, tiff.read_bytes())}))
    assert heatmap.size == Image.open(tiff).size


# ------------------------------------------------------------------ bad input
def test_oversized_upload_is_413_while_streaming(api):
    blob = os.urandom(9 * 1024 * 1024)  # the test server's limit is 8 MiB
    _error(api.post("/v1/localize", content=blob), 413, "payload_too_large")
    _error(api.post("/v1/localize", files={"image": ("big.jpg", blob)}), 413, "payload_too_large")
    chunks = (blob[i : i + 65536] for i in range(0, len(blob), 65536))  # chunked: no Content-Length
    _error(api.post("/v1/localize", content=chunks), 413, "payload_too_large")


def test_decompression_bomb_is_413_before_decoding(api):
    bomb = hostile.png_declaring(30000, 30000)
    error = _error(api.post("/v1/localize", files={"image": ("bomb.png", bomb)}), 413, "too_many_pixels")
    assert "30000x30000" in error["message"]


def test_truncated_jpeg_is_422(api):
    data = (EXIF_SAMPLES / "jpg" / "exif-org" / "fujifilm-dx10.jpg").read_bytes()
    _error(api.post("/v1/localize", files={"image": ("cut.jpg", data[: len(data) // 2])}), 422, "corrupt_image")


def test_text_named_jpg_is_415(api):
    text = b"Dear editor, please find attached the photo.\n" * 20
    _error(api.post("/v1/localize", files={"image": ("photo.jpg", text, "image/jpeg")}), 415, "unsupported_format")


def test_request_errors_are_json(api):
    _error(api.get("/v1/nothing-here"), 404, "not_found")
    _error(api.get("/v1/localize"), 405, "method_not_allowed")
    _error(api.post("/v1/localize?format=gif", content=b"x"), 422, "invalid_request")
    _error(api.post("/v1/localize", files={"photo": ("a.jpg", b"x")}), 422, "missing_image")
    _error(api.post("/v1/localize", content=b""), 422, "empty_image")
    _error(api.post("/v1/scan", content=b"raw"), 422, "not_multipart")


# ------------------------------------------------------------------ batches
def test_batch_in_input_order_with_one_corrupt_file(api):
    good = [ORIENTATION / f"portrait_{k}.jpg" for k in (1, 6, 8)]
    truncated = (EXIF_SAMPLES / "jpg" / "exif-org" / "kodak-dc240.jpg").read_bytes()[:9000]
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in good[:2]]
    files.append(("images", ("broken.jpg", truncated, "image/jpeg")))
    files.append(("images", (good[2].name, good[2].read_bytes(), "image/jpeg")))
    response = api.post("/v1/scan", files=files)
    assert response.status_code == 200, response.text
    items = response.json()
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    assert [item["filename"] for item in items] == [f[1][0] for f in files]
    assert items[2]["error"]["code"] == "corrupt_image" and "score" not in items[2]
    for item in items[:2] + items[3:]:
        assert "error" not in item, item
        assert (item["width"], item["height"]) == (450, 600)  # portrait as displayed
        assert Image.open(io.BytesIO(base64.b64decode(item["heatmap_png_base64"]))).size == (450, 600)
    assert [item["metadata"]["orientation"] for item in items if "metadata" in item] == [1, 6, 8]


def test_too_many_images_in_a_batch_is_413(api):
    files = [("images", (f"{i}.jpg", b"tiny", "image/jpeg")) for i in range(33)]  # limit 32
    _error(api.post("/v1/scan", files=files), 413, "too_many_images")


def test_batch_without_heatmaps(api):
    path = EXIF_SAMPLES / "jpg" / "Canon_40D.jpg"
    items = api.post("/v1/scan?include_heatmap=false", files=[("images", (path.name, path.read_bytes()))]).json()
    assert "heatmap_png_base64" not in items[0] and items[0]["metadata"]["camera"] == "Canon EOS 40D"


# ------------------------------------------------------------------ metrics
def test_metrics_count_what_happened(api):
    """Telemetry counts the requests this test makes (deltas, so any order of tests works)."""
    before = _metrics(api)
    photo = (EXIF_SAMPLES / "jpg" / "Canon_40D.jpg").read_bytes()
    assert api.post("/v1/localize", content=photo).status_code == 200
    # Streamed without Content-Length, so the limit trips while the bytes arrive (and they are counted).
    chunks = (b"x" * (1024 * 1024) for _ in range(9))
    _error(api.post("/v1/localize", content=chunks), 413, "payload_too_large")
    _error(api.post("/v1/localize", content=b"x" * (9 * 1024 * 1024)), 413, "payload_too_large")
    _error(api.post("/v1/localize", files={"image": ("bomb.png", hostile.png_declaring(30000, 30000))}),
           413, "too_many_pixels")
    _error(api.post("/v1/localize", files={"image": ("notes.jpg", b"Dear editor, please find attached the photo.\n" * 20)}),
           415, "unsupported_format")
    _error(api.post("/v1/localize", files={"image": ("cut.jpg", photo[: len(photo) // 2])}), 422, "corrupt_image")
    _error(api.get("/v1/nothing-here"), 404, "not_found")
    scanned = api.post("/v1/scan", files=[("images", ("a.jpg", photo)), ("images", ("b.jpg", photo[: len(photo) // 2]))])
    assert scanned.status_code == 200 and [("error" in item) for item in scanned.json()] == [False, True]
    after = _metrics(api)

    def delta(name, **labels):
        return _sum(after, name, **labels) - _sum(before, name, **labels)

    route = "/v1/localize"
    assert delta("span_http_requests_total", route=route, status="200") >= 1
    assert delta("span_http_requests_total", route=route, status="413") >= 3
    assert delta("span_http_requests_total", route=route, status="415") >= 1
    assert delta("span_http_requests_total", route=route, status="422") >= 1
    assert delta("span_http_requests_total", route="/v1/scan", status="200") >= 1
    assert delta("span_http_requests_total", status="404") >= 1
    assert delta("span_images_processed_total", outcome="ok") >= 2
    assert delta("span_images_processed_total", outcome="error", code="corrupt_image") >= 2
    assert delta("span_images_processed_total", outcome="error", code="unsupported_format") >= 1
    assert delta("span_images_processed_total", outcome="error", code="too_many_pixels") >= 1
    assert delta("span_http_received_bytes_total", route=route) > 8 * 1024 * 1024
    assert delta("span_http_request_duration_seconds_count", route=route) >= 6
    assert delta("span_inference_seconds_count") >= 1 and delta("span_queue_wait_seconds_count") >= 2
    assert delta("span_batch_size_sum") >= 2
    assert _sum(after, "span_http_requests_in_flight") == 1  # this request
    assert _sum(after, "span_model_info", provider="CPUExecutionProvider") == 1
    assert _sum(after, "span_ready") == 1


# ------------------------------------------------------------------ overload and shutdown (own server)
def test_warm_up_then_full_queue_503_then_sigterm_drains():
    # 20 warm-up inferences (~3 s here) keep the server warming while the test asks; with one, a fast
    # CI host finished warming between the test's first two requests (stop 30's CI failure).
    env = {"SPAN_QUEUE_SIZE": "1", "SPAN_DRAIN_DELAY_S": "2", "SPAN_MAX_WORKING_PIXELS": str(256 * 256),
           "SPAN_WARMUP_RUNS": "20"}
    photo = (EXIF_SAMPLES / "jpg" / "exif-org" / "fujifilm-dx10.jpg").read_bytes()
    with running_server(env, wait_for="/health/live") as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        # Live at once; ready only after the warm-up inferences, and no image work before that.
        warming = client.get("/health/ready")
        _error(warming, 503, "not_ready")
        assert "warm" in warming.json()["error"]["message"]
        _error(client.post("/v1/localize", content=photo), 503, "not_ready")
        deadline = time.monotonic() + TIMEOUT
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        first: dict = {}
        worker = threading.Thread(target=lambda: first.update(r=client.post("/v1/localize", content=photo)))
        worker.start()
        while _sum(_metrics(client), "span_queue_depth") < 1:  # the first image holds the only place
            assert time.monotonic() < deadline and worker.is_alive(), server.log()
            time.sleep(0.05)
        refused = client.post("/v1/localize", content=photo)
        _error(refused, 503, "overloaded")
        assert int(refused.headers["retry-after"]) >= 1
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        _error(client.get("/health/ready"), 503, "not_ready")
        _error(client.post("/v1/localize", content=photo), 503, "shutting_down")
        worker.join(TIMEOUT)
        assert first["r"].status_code == 200  # in-flight work finished
        assert server.process.wait(60) is not None
    log = server.log()
    assert "draining" in log and "Application shutdown complete" in log
    assert ": 20 inferences," in log
