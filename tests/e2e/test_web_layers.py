"""The page's forensic layers in a real headless Chromium against the real server: the layer switch
redraws the server's maps through the inferno table, copy-move matches are drawn as lines, and
the metadata and provenance panels say what the file and its Content Credentials say.
The screenshot lands in test-artifacts/web-layers.png."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from service.layers.base import decode_base64url
from service.render import INFERNO
from spancore.testing import EXIF_SAMPLES, ROOT
from test_web import ARTIFACTS, canvas_pixels, sync_api, pytestmark, browser, page  # noqa: F401 - fixtures

PHOTO = EXIF_SAMPLES / "jpg" / "gps" / "DSCN0010.jpg"  # Nikon COOLPIX P6000, 640x480, EXIF thumbnail
SOURCE, TARGET = (40, 60, 140, 180), (300, 420, 400, 540)  # top, left, bottom, right: a 120x100 patch


def copy_moved(tmp_path):
    """The camera photo with a patch copied onto itself, re-saved at quality 90 with its EXIF."""
    image = Image.open(PHOTO)
    exif = image.info["exif"]
    pixels = np.array(image.convert("RGB"))
    top, left, bottom, right = SOURCE
    t_top, t_left, _, _ = TARGET
    pixels[t_top:t_top + bottom - top, t_left:t_left + right - left] = pixels[top:bottom, left:right]
    path = tmp_path / "edited.jpg"
    Image.fromarray(pixels).save(path, format="JPEG", quality=90, exif=exif)
    return path


def open_card(page, live_server, path, answers):
    page.on("response", lambda r: answers.__setitem__(r.url.split("?")[0].rsplit("/", 1)[-1], r)
            if "/v1/" in r.url else None)
    page.goto(live_server + "/")
    page.set_input_files("#file-input", [str(path)])
    card = page.locator("article.result", has=page.get_by_role("heading", name=path.name))
    sync_api.expect(card).to_have_class(re.compile(r"\blayers-done\b"), timeout=240_000)
    return card


def test_layer_switch_draws_the_servers_maps_and_copy_move_lines(page, live_server, tmp_path):
    answers: dict = {}
    card = open_card(page, live_server, copy_moved(tmp_path), answers)
    body = answers["analyze"].json()
    width, height = body["width"], body["height"]
    canvas = card.locator("canvas")
    switch = card.get_by_test_id("layer-switch")
    # Every pixel layer the server answered can be chosen; the caption says what it shows.
    for name, label in (("ela", "Error level"), ("ghost", "JPEG ghost"), ("noise", "Noise level"),
                        ("jpeg", "JPEG grid"), ("copymove", "Copy-move")):
        assert body["layers"][name]["applicable"], (name, body["layers"][name].get("reason"))
        sync_api.expect(switch.get_by_label(label, exact=True)).to_be_enabled()

    # Error level, heatmap only: the server's map through the inferno table, pixel for pixel.
    card.get_by_label("Heatmap only", exact=True).check()
    switch.get_by_label("Error level", exact=True).check()
    assert canvas.evaluate("c => c.dataset.layer") == "ela"
    sync_api.expect(card.get_by_test_id("layer-caption")).to_contain_text("re-saved as JPEG")
    with Image.open(io.BytesIO(decode_base64url(body["layers"]["ela"]["png_base64url"]))) as png:
        ela = np.asarray(png.convert("L"))
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.integers(0, width, 200), rng.integers(0, height, 200)])
    expected = INFERNO[ela[points[:, 1], points[:, 0]]].astype(np.int16)
    assert np.abs(canvas_pixels(page, card, points) - expected).max() <= 1

    # Copy-move: both regions bright, lines drawn between them, the rest of the map dark.
    switch.get_by_label("Copy-move", exact=True).check()
    summary = body["layers"]["copymove"]["summary"]
    region = summary["regions"][0]
    assert region["residual_correlation"] > summary["min_residual_correlation"]
    verified = len(summary["regions"]) + len(summary["dense_shifts"])
    sync_api.expect(card.get_by_test_id("layer-caption")).to_contain_text(
        f"{verified} verified; {len(summary['rejected'])} look-alike")
    assert region["transform"]["translation"] == pytest.approx([TARGET[1] - SOURCE[1], TARGET[0] - SOURCE[0]], abs=3)
    centres = np.array([[(SOURCE[1] + SOURCE[3]) // 2, (SOURCE[0] + SOURCE[2]) // 2],
                        [(TARGET[1] + TARGET[3]) // 2, (TARGET[0] + TARGET[2]) // 2]])
    far = np.array([[600, 20], [20, 460], [620, 300]])  # no region, no line
    shown = canvas_pixels(page, card, np.vstack([centres, far]))
    assert (shown[:2, :2] > 150).all(), shown[:2]  # inside the copied regions, or on a line over them
    assert (shown[2:] < 40).all(), shown[2:]
    sx, sy, tx, ty = region["matches"][0]
    midpoint = np.array([[round((sx + tx) / 2), round((sy + ty) / 2)]])
    line_pixel = canvas_pixels(page, card, midpoint)[0]
    assert (line_pixel > 200).all(), line_pixel  # the near-white match line

    # Metadata panel: camera, the EXIF thumbnail no longer matching, a software re-save.
    panel = card.get_by_test_id("metadata-panel")
    sync_api.expect(panel).to_contain_text("NIKON")
    sync_api.expect(panel).to_contain_text("re-saved by software")
    sync_api.expect(panel).to_contain_text("libjpeg standard tables at quality 90")
    sync_api.expect(card.get_by_test_id("provenance-panel")).to_contain_text("No Content Credentials")

    sync_api.expect(card.locator('[data-field="legend-caption"]')).to_contain_text("The layer's value")

    assert page.problems == []
    card.get_by_label("Overlay", exact=True).check()  # the picture the README shows
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "web-layers.png"))


def test_provenance_panel_for_signed_and_tampered_files(page, live_server, tmp_path):
    import importlib.util
    import inspect

    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    # The signing helpers of the C2PA unit tests (tests/unit/service/layers/), loaded by path:
    # that folder is not on sys.path when only tests/e2e is collected.
    spec = importlib.util.spec_from_file_location(
        "c2pa_signing_helpers", ROOT / "tests" / "unit" / "service" / "layers" / "test_content_credentials.py")
    c2pa_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c2pa_tests)

    pem = inspect.unwrap(c2pa_tests.signer_pem)()
    data, _ = c2pa_tests._jpeg(7)
    signed = c2pa_tests.sign(data, pem, c2pa_tests.EDITED)
    (tmp_path / "signed.jpg").write_bytes(signed)
    tampered = bytearray(signed)
    tampered[-300] ^= 0x5A
    (tmp_path / "tampered.jpg").write_bytes(bytes(tampered))

    card = open_card(page, live_server, tmp_path / "signed.jpg", {})
    panel = card.get_by_test_id("provenance-panel")
    sync_api.expect(panel).to_contain_text("intact, but the signer is not verified")
    sync_api.expect(panel).to_contain_text("span test signer")
    sync_api.expect(panel).to_contain_text("c2pa.edited · GIMP 2.10")
    assert "INVALID" not in panel.inner_text()

    page.set_input_files("#file-input", [str(tmp_path / "tampered.jpg")])
    bad = page.locator("article.result", has=page.get_by_role("heading", name="tampered.jpg"))
    sync_api.expect(bad).to_have_class(re.compile(r"\blayers-done\b"), timeout=240_000)
    sync_api.expect(bad.get_by_test_id("provenance-panel")).to_contain_text("INVALID")
    sync_api.expect(bad.get_by_test_id("provenance-panel")).to_contain_text("dataHash.mismatch")
    assert "not verified" not in bad.get_by_test_id("provenance-panel").inner_text()
