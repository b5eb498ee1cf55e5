"""Fuzzing, bounded: hypothesis on the decode path, schemathesis against the live OpenAPI schema.

Decode properties (in process, no server): whatever the bytes, `decode_image` returns RGB
uint8 pixels whose size matches its metadata, or raises `InputError` with a 4xx status, a
code and a message; nothing else escapes. Valid images of every mode and writable format
come back at their size (pixel-exact where the format is lossless); a header that declares
more pixels than the limit is refused before any pixel is decoded.

API (the session's real server): requests generated from /openapi.json, valid and invalid,
never get a 5xx; answers use the status codes, content types and error body the schema
documents.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

import hostile
from service.decode import DecodedImage, InputError, decode_image

MAX_PIXELS = 4_000_000
SAMPLES = hostile.sample_files()
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True, print_blob=True)


def check_outcome(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage | InputError:
    """Decode; the only outcomes allowed are a well-formed image or a well-formed InputError."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels, min_side=1)
    except InputError as error:
        assert 400 <= error.status < 500
        assert error.code and error.message
        assert error.as_json() == {"error": {"code": error.code, "message": error.message}}
        return error
    rgb = decoded.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
    assert rgb.shape[:2] == (decoded.metadata.height, decoded.metadata.width)
    assert rgb.shape[0] * rgb.shape[1] <= max_pixels
    return decoded


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\xff\xd8\xff")
@example(b"\x89PNG\r\n\x1a\n")
@example(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
@example(b"II*\x00\x08\x00\x00\x00\x00\x00")
@example(b"BM" + b"\x00" * 60)
@example(b"\x00\x00\x00\x18ftypheic")
def test_arbitrary_bytes_decode_or_fail_cleanly(data):
    check_outcome(data)


@st.composite
def mutated_images(draw):
    """A valid file of a supported format with bytes overwritten, inserted, deleted or cut."""
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["overwrite", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data) - 1))
        if how == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[max(1, at) :]
        if not data:
            break
    return bytes(data)


@FUZZ
@given(mutated_images())
def test_mutated_images_decode_or_fail_cleanly(data):
    check_outcome(data)


LOSSLESS = {"PNG": {}, "BMP": {}, "TIFF": {}, "WEBP": {"lossless": True}}
MODES = ["RGB", "L", "RGBA", "LA", "P", "I;16", "CMYK", "1"]
WRITABLE = {  # which formats Pillow can write each mode in
    "RGB": ["PNG", "BMP", "TIFF", "WEBP", "JPEG"], "L": ["PNG", "BMP", "TIFF", "WEBP", "JPEG"],
    "RGBA": ["PNG", "TIFF", "WEBP"], "LA": ["PNG", "TIFF"], "P": ["PNG", "BMP", "TIFF"],
    "I;16": ["PNG", "TIFF"], "CMYK": ["TIFF", "JPEG"], "1": ["PNG", "BMP", "TIFF"],
}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(width=st.integers(1, 80), height=st.integers(1, 80), mode=st.sampled_from(MODES), data=st.data())
def test_valid_images_of_every_mode_round_trip(width, height, mode, data):
    fmt = data.draw(st.sampled_from(WRITABLE[mode]))
    image = hostile.photo(width, height, mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image, dtype=np.uint16) * 257)  # 2-D uint16 -> mode I;16
    encoded = hostile.encode(image, fmt, **LOSSLESS.get(fmt, {}))
    decoded = check_outcome(encoded)
    assert isinstance(decoded, DecodedImage), decoded
    assert decoded.rgb.shape == (height, width, 3)
    if mode == "RGB" and fmt in LOSSLESS:
        assert np.array_equal(decoded.rgb, np.asarray(image)), "a lossless RGB image changed in decoding"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1),
       kind=st.sampled_from(["png", "tiff", "bmp"]))
def test_declared_sizes_over_the_limit_are_refused_from_the_header(width, height, kind):
    limit = 10_000
    data = {"png": hostile.png_declaring, "tiff": hostile.tiff_declaring,
            "bmp": hostile.bmp_declaring}[kind](width, height)
    outcome = check_outcome(data, max_pixels=limit)
    if width * height > limit:
        assert isinstance(outcome, InputError)
        assert outcome.status in (413, 422), outcome.message


@settings(max_examples=16, deadline=None, derandomize=True)
@given(orientation=st.integers(1, 8), width=st.integers(8, 40), height=st.integers(8, 40))
def test_exif_orientation_gives_the_displayed_size(orientation, width, height):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = hostile.encode(hostile.photo(width, height), "JPEG", exif=exif.tobytes())
    decoded = check_outcome(data)
    assert isinstance(decoded, DecodedImage)
    rotated = orientation in (5, 6, 7, 8)
    assert (decoded.metadata.width, decoded.metadata.height) == ((height, width) if rotated else (width, height))
    assert decoded.metadata.orientation == orientation


# ---------------------------------------------------------------------------- schemathesis
# Driven through `APIOperation.as_strategy` and plain hypothesis: schemathesis' own pytest
# loader (`from_fixture`) fails on pytest 9 ('Function' object has no attribute '_nodeid').
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def api_schema(live_server):
    return schemathesis.openapi.from_url(live_server + "/openapi.json", timeout=30)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_fails_on_generated_requests(api_schema, live_server, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/localize", "/v1/scan", "/v1/model", "/health/ready"}
    tried = []

    for operation in operations:
        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call(base_url=live_server, timeout=120)
            tried.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=CHECKS)
            if response.status_code >= 400:  # every error is the JSON error body
                content_type = response.headers.get("content-type") or [""]  # schemathesis: lists of values
                assert content_type[0].startswith("application/json"), response.text[:200]
                error = response.json()["error"]
                assert error["code"] and error["message"]

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without parameters has no invalid input
            assert mode == GenerationMode.NEGATIVE
    statuses = sorted({status for _, _, status in tried})
    print(f"\nschemathesis {mode}: {len(tried)} requests over {len(operations)} operations, statuses {statuses}")
    assert not [t for t in tried if t[2] >= 500]
