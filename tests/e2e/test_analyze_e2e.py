"""POST /v1/analyze on the real `span serve` process: every layer on real camera files
(../shared/data/photos/exif-samples) and dev benchmark rows; bad input and unknown layers as
4xx JSON; layer timings on /metrics."""
from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from service.layers import DEFAULT_LAYERS, LAYER_NAMES, PIXEL_LAYERS
from service.layers.base import decode_base64url
from spancore.testing import EXIF_SAMPLES, SHARED_DATA
from test_api_e2e import _error, _metrics, _sum, api  # noqa: F401 - api: the fixture, a client of the live server

DEV = SHARED_DATA / "benchmarks" / "dev"


def analyze(api: httpx.Client, data: bytes, layers: str | None = None, name: str = "photo") -> httpx.Response:
    params = {"layers": layers} if layers is not None else {}
    return api.post("/v1/analyze", params=params, files={"image": (name, data)})


def check_sections(body: dict, asked: tuple[str, ...]) -> None:
    assert list(body["layers"]) == list(asked)
    assert body["png_encoding"] == "base64url"
    for name, section in body["layers"].items():
        assert isinstance(section["applicable"], bool) and section["ms"] >= 0
        if not section["applicable"]:
            assert section["reason"], name
            continue
        if name in PIXEL_LAYERS or name == "span":
            image = Image.open(io.BytesIO(decode_base64url(section["png_base64url"])))
            assert image.format == "PNG" and image.mode == "L" and image.size == (body["width"], body["height"]), name


# Every layer on the small camera files; the default layers (all but the slow ghost and copy-move,
# whose cost at full size bench/layers_cost.py measures) on the multi-megapixel ones.
SMALL_FILES = sorted(p for p in (EXIF_SAMPLES / "jpg").glob("*.jpg") if p.stat().st_size < 200_000) + [
    EXIF_SAMPLES / "tiff" / "Arbitro.tiff", EXIF_SAMPLES / "jpg" / "xmp" / "BlueSquare.jpg",
    EXIF_SAMPLES / "jpg" / "gps" / "DSCN0010.jpg",
]
LARGE_FILES = [EXIF_SAMPLES / "jpg" / "hdr" / "canon_hdr_NO.jpg", EXIF_SAMPLES / "jpg" / "orientation" / "portrait_6.jpg",
               EXIF_SAMPLES / "heic" / "IMG_5195.HEIC"]


def test_every_layer_answers_on_camera_files(api):
    if not EXIF_SAMPLES.is_dir():
        pytest.skip("no shared data")
    answered = {}
    for paths, layers, expected in ((SMALL_FILES, "all", LAYER_NAMES), (LARGE_FILES, None, DEFAULT_LAYERS)):
        for path in paths:
            response = analyze(api, path.read_bytes(), layers, path.name)
            assert response.status_code == 200, (path, response.text)
            body = response.json()
            check_sections(body, expected)
            answered[path.name] = {name: s["applicable"] for name, s in body["layers"].items()}
    assert len(answered) >= 20
    # Sanity on what applies where: JPEG structure to JPEGs only; metadata to camera files.
    assert answered["Canon_40D.jpg"]["jpeg"] and not answered["Arbitro.tiff"]["jpeg"]
    assert not answered["IMG_5195.HEIC"]["jpeg"] and answered["IMG_5195.HEIC"]["metadata"]
    assert all(flags["ela"] and flags["span"] and flags["c2pa"] for flags in answered.values())


def test_camera_file_sections_carry_the_evidence(api):
    body = analyze(api, (EXIF_SAMPLES / "jpg" / "Canon_40D.jpg").read_bytes()).json()
    assert tuple(body["layers"]) == DEFAULT_LAYERS
    assert body["layers"]["metadata"]["summary"]["editors"] == ["GIMP 2.4.5"]
    assert body["layers"]["c2pa"]["summary"]["verdict"] == "none"
    assert 0 <= body["layers"]["span"]["summary"]["score"] <= 1 and body["model"]["name"]
    assert body["layers"]["jpeg"]["summary"]["implied_quality"] > 0


def test_copy_move_layer_on_a_dev_copy_move_row(api):
    """A NoSo copy-move is found and verified; its untouched original, with the same scene, is not."""
    image, original = DEV / "images" / "noso__03_mod.png", DEV / "images" / "noso__03_orig.png"
    if not image.is_file():
        pytest.skip("no dev benchmark")
    body = analyze(api, image.read_bytes(), "copymove,jpeg").json()
    copymove = body["layers"]["copymove"]["summary"]
    assert copymove["found"] and copymove["regions"][0]["n_matches"] >= 6
    assert copymove["regions"][0]["residual_correlation"] >= copymove["min_residual_correlation"]
    assert len(copymove["regions"][0]["source_polygon"]) >= 3
    assert not body["layers"]["jpeg"]["applicable"] and "not a JPEG" in body["layers"]["jpeg"]["reason"]
    assert "model" not in body  # the model did not run: span was not asked for
    untouched = analyze(api, original.read_bytes(), "copymove").json()["layers"]["copymove"]["summary"]
    assert not untouched["found"] and untouched["copied_fraction"] == 0


def test_the_span_layer_is_the_localize_answer_clones_included(api):
    """A NoSo copy-move (a lossless plain shift): /v1/analyze's span section and /v1/localize give
    the same score and the same clone; its untouched original has none."""
    image, original = DEV / "images" / "noso__05_mod.png", DEV / "images" / "noso__05_orig.png"
    if not image.is_file():
        pytest.skip("no dev benchmark")
    for path, found in ((image, True), (original, False)):
        span = analyze(api, path.read_bytes(), "span").json()["layers"]["span"]["summary"]
        localized = api.post("/v1/localize", params={"format": "json"}, files={"image": (path.name, path.read_bytes())})
        assert localized.status_code == 200
        answer = localized.json()
        assert span["clones"] == answer["clones"] and answer["clones"]["found"] is found
        assert span["score"] == pytest.approx(answer["score"], abs=1e-6)
        if found:
            assert answer["clones"]["clones"][0]["correlation"] > 0.99
            assert answer["score"] >= answer["image_threshold"]


def test_unknown_layers_and_bad_images_are_4xx_json(api):
    body = _error(analyze(api, b"\xff\xd8 not really", "ela,bogus"), 422, "unknown_layer")
    assert "bogus" in body["message"]
    _error(analyze(api, b"GIF89a not supported"), 415, "unsupported_format")
    _error(analyze(api, (EXIF_SAMPLES / "jpg" / "corrupted.jpg").read_bytes()[:3000]), 422, "corrupt_image")
    _error(api.post("/v1/analyze", files={"photo": ("x.jpg", b"x")}), 422, "missing_image")
    _error(api.post("/v1/analyze", content=b"\0" * (9 * 1024 * 1024)), 413, "payload_too_large")


def test_layer_timings_are_on_metrics(api):
    before = _metrics(api)
    assert analyze(api, (EXIF_SAMPLES / "jpg" / "Nikon_D70.jpg").read_bytes(), "ela,noise").status_code == 200
    after = _metrics(api)
    for layer in ("ela", "noise"):
        counted = _sum(after, "span_layer_duration_seconds_count", layer=layer) - _sum(
            before, "span_layer_duration_seconds_count", layer=layer)
        assert counted == 1, layer
    assert _sum(after, "span_http_requests_total", route="/v1/analyze", status="200") >= 1
