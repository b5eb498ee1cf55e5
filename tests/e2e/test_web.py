"""The analyst page at `/`, in a real headless Chromium (Debian's package, driven by Playwright)
against the session's real server process, with a real camera photo.

`make test` installs Debian's chromium when it is missing (Makefile target `browser`); Playwright
never downloads a browser. The screenshot lands in test-artifacts/web-page.png.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.render import INFERNO
from spancore.testing import EXIF_SAMPLES, ROOT, TEST_SERVER_ENV, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# A camera photo stored sideways (EXIF orientation 6), with camera model and capture date.
# Contributed to exif-samples by Jesus Cea, CC BY-SA 4.0.
PHOTO = EXIF_SAMPLES / "jpg" / "hdr" / "canon_hdr_NO.jpg"
ARTIFACTS = ROOT / "test-artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium: `make test` installs it (apt-get install chromium)"),
    pytest.mark.skipif(not PHOTO.is_file(), reason=f"shared data not found at {EXIF_SAMPLES} (set SPAN_SHARED_DATA)"),
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    watch_csp(page, problems)
    page.problems = problems
    yield page
    context.close()


def watch_csp(page, problems: list[str]) -> None:
    """Chromium reports each Content-Security-Policy violation on the console: each is a problem."""
    page.on("console", lambda message: "Content Security Policy" in message.text
            and problems.append(f"CSP violation: {message.text}"))


def canvas_pixels(page, card, points: np.ndarray) -> np.ndarray:
    """RGB of the result canvas at (x, y) points."""
    values = card.locator("canvas").evaluate(
        """(canvas, points) => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            return points.map(([x, y]) => { const i = (y * canvas.width + x) * 4; return [data[i], data[i + 1], data[i + 2]]; });
        }""",
        points.tolist(),
    )
    return np.array(values, dtype=np.int16)


def test_keyboard_reaches_the_picker_and_a_dropped_file_is_analysed(page, live_server):
    page.goto(live_server + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input"  # the picker, first in tab order
    # A real drop event (a DataTransfer holding a file) on the drop zone. The file is not an image,
    # so the server answers at once, without running the model.
    with page.expect_response(lambda response: "/v1/localize" in response.url) as response:
        page.locator("#drop-zone").evaluate(
            """zone => {
                const data = new DataTransfer();
                data.items.add(new File(["%PDF-1.4 not an image"], "dropped.png", { type: "image/png" }));
                for (const type of ["dragenter", "dragover", "drop"]) {
                    zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
                }
            }"""
        )
    assert response.value.status == 415
    card = page.locator("article.result", has=page.get_by_role("heading", name="dropped.png"))
    sync_api.expect(card.get_by_role("alert")).to_contain_text(response.value.json()["error"]["message"])
    sync_api.expect(page.get_by_test_id("status")).to_contain_text("dropped.png: not analysed")
    assert page.problems == []


def test_upload_shows_overlay_score_metadata_and_rejects_a_fake(page, live_server, tmp_path):
    model = httpx.get(f"{live_server}/v1/model").json()
    answers: dict[str, dict] = {}   # what the server told the page, by file name

    def keep(response):
        if "/v1/localize" in response.url:
            name = "notes.jpg" if response.status != 200 else PHOTO.name
            answers[name] = response.json()

    page.on("response", keep)
    page.goto(live_server + "/")
    sync_api.expect(page.get_by_test_id("model-info")).to_contain_text(f"{model['name']} {model['version']}")
    sync_api.expect(page.get_by_test_id("model-info")).to_contain_text(model["precision"])
    banner, caveat = page.get_by_test_id("untrained-banner"), page.get_by_test_id("model-caveat")
    if model["trained"]:
        sync_api.expect(banner).to_be_hidden()
    else:
        sync_api.expect(banner).to_be_visible()
        sync_api.expect(banner).to_contain_text(model["status"])
    if model["trained"] and model["warning"]:  # trained weights with a caveat from their makers
        sync_api.expect(caveat).to_be_visible()
        sync_api.expect(caveat).to_contain_text(model["warning"])
    else:
        sync_api.expect(caveat).to_be_hidden()

    fake = tmp_path / "notes.jpg"
    fake.write_text("meeting notes, not a photo, whatever the name says")
    page.set_input_files("#file-input", [str(PHOTO), str(fake)])

    photo_card = page.locator("article.result", has=page.get_by_role("heading", name=PHOTO.name))
    fake_card = page.locator("article.result", has=page.get_by_role("heading", name="notes.jpg"))
    sync_api.expect(photo_card).to_have_class(re.compile(r"\bdone\b"), timeout=120_000)
    sync_api.expect(fake_card).to_have_class(re.compile(r"\bfailed\b"), timeout=60_000)

    # The rejected file: the server's own message, in the page, as an alert.
    error = answers["notes.jpg"]["error"]
    sync_api.expect(fake_card.get_by_role("alert")).to_contain_text(error["message"])
    sync_api.expect(fake_card.get_by_role("alert")).to_contain_text("Not analysed")

    # The photo: the server's score, dimensions after EXIF orientation, metadata.
    answer = answers[PHOTO.name]
    sync_api.expect(photo_card.get_by_test_id("score")).to_have_text(f"{answer['score']:.2f}")
    # the verdict is the image decision, at the image threshold (not the pixels')
    verdict = photo_card.locator('[data-field="verdict"]')
    sync_api.expect(verdict).to_contain_text(f"{answer['image_threshold']:.2f} image threshold")
    sync_api.expect(verdict).to_contain_text("At or above" if answer["score"] >= answer["image_threshold"] else "Below")
    width, height = answer["width"], answer["height"]
    assert (width, height) == (1536, 2048)  # stored 2048x1536, turned upright by orientation 6
    metadata = photo_card.get_by_test_id("metadata")
    sync_api.expect(metadata).to_contain_text(f"{width} × {height} px")
    sync_api.expect(metadata).to_contain_text(answer["metadata"]["camera"])
    sync_api.expect(metadata).to_contain_text(answer["metadata"]["captured"])
    sync_api.expect(metadata).to_contain_text("EXIF orientation 6 applied")
    # the clone search's answer, in words
    sync_api.expect(metadata).to_contain_text("Copied within the photo")
    sync_api.expect(metadata).to_contain_text("a region repeated" if answer["clones"]["found"] else "none found")
    canvas = photo_card.locator("canvas")
    assert canvas.evaluate("c => [c.width, c.height]") == [width, height]
    assert canvas.bounding_box()["height"] > 300  # drawn, and big enough to look at

    # "Heatmap only" is the server's map through the same inferno table as service/render.py.
    with Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png_base64"]))) as png:
        heatmap = np.asarray(png.convert("L"))
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.integers(0, width, 300), rng.integers(0, height, 300)])
    points = np.vstack([points, np.unravel_index(np.argmax(heatmap), heatmap.shape)[::-1]])
    photo_card.get_by_label("Heatmap only", exact=True).check()
    shown = canvas_pixels(page, photo_card, points)
    expected = INFERNO[heatmap[points[:, 1], points[:, 0]]].astype(np.int16)
    assert np.abs(shown - expected).max() <= 1

    # The slider and the view switch redraw locally: no new request.
    requests_before = len(answers)
    photo_card.get_by_label("Photo only", exact=True).check()
    photo_only = canvas_pixels(page, photo_card, points)
    photo_card.get_by_label("Overlay", exact=True).check()
    slider = photo_card.get_by_role("slider", name="Heatmap opacity")
    slider.fill("0")
    assert np.abs(canvas_pixels(page, photo_card, points) - photo_only).max() <= 1
    slider.fill("100")
    full = canvas_pixels(page, photo_card, points)
    alpha = (0.2 + 0.8 * heatmap[points[:, 1], points[:, 0]] / 255.0)[:, None]
    assert np.abs(full - (expected * alpha + photo_only * (1 - alpha))).max() <= 3
    slider.fill("75")
    assert len(answers) == requests_before

    # Downloads: the heatmap PNG as the server sent it, and a JSON report naming the file's digest.
    with page.expect_download() as download:
        photo_card.get_by_role("link", name="Heatmap PNG").click()
    assert download.value.suggested_filename == "canon_hdr_NO.heatmap.png"
    assert Path(download.value.path()).read_bytes() == base64.b64decode(answer["heatmap_png_base64"])
    with page.expect_download() as download:
        photo_card.get_by_role("link", name="JSON report").click()
    report = json.loads(Path(download.value.path()).read_text())
    assert report["score"] == answer["score"] and report["model"] == answer["model"]
    assert report["file"]["sha256"] == hashlib.sha256(PHOTO.read_bytes()).hexdigest()

    assert page.problems == []
    ARTIFACTS.mkdir(exist_ok=True)
    photo_card.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)


def test_with_api_keys_the_page_asks_once_per_tab_and_analyses_under_its_csp(browser):
    """Keys on: the page asks for a key when the server answers 401, says so when one is refused,
    keeps the accepted one for the tab (not for other tabs), and analyses a photo under its CSP."""
    key = "newsroom-Hs82-secret"
    env = {**TEST_SERVER_ENV, "SPAN_API_KEYS": f"newsroom:{key}"}
    with running_server(env) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        watch_csp(page, problems)
        loaded = page.goto(server.url + "/")
        assert "script-src 'self';" in loaded.headers["content-security-policy"]
        form = page.get_by_test_id("key-form")
        sync_api.expect(form).to_be_visible()
        sync_api.expect(page.get_by_test_id("model-info")).to_have_text("Waiting for an API key…")
        sync_api.expect(page.locator("#key-error")).to_be_hidden()
        assert page.evaluate("document.activeElement.id") == "key-input"

        page.fill("#key-input", "a-wrong-key")
        page.get_by_role("button", name="Use key").click()
        sync_api.expect(page.locator("#key-error")).to_be_visible()  # refused: asked again, saying why
        page.fill("#key-input", key)
        page.get_by_role("button", name="Use key").click()
        sync_api.expect(form).to_be_hidden()
        sync_api.expect(page.get_by_test_id("model-info")).to_contain_text("sha256")
        assert page.evaluate("sessionStorage.getItem('span-api-key')") == key
        assert page.evaluate("localStorage.length") == 0

        page.set_input_files("#file-input", [str(PHOTO)])
        card = page.locator("article.result", has=page.get_by_role("heading", name=PHOTO.name))
        sync_api.expect(card).to_have_class(re.compile(r"\bdone\b"), timeout=120_000)
        sync_api.expect(card.get_by_test_id("score")).to_have_text(re.compile(r"^\d\.\d\d$"))
        sync_api.expect(form).to_be_hidden()  # asked once

        other_tab = context.new_page()  # sessionStorage is per tab: a new tab asks again
        other_tab.goto(server.url + "/")
        sync_api.expect(other_tab.get_by_test_id("key-form")).to_be_visible()
        context.close()

        log = server.log()
        assert key not in log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        analysed = [line for line in lines if line["route"] == "/v1/localize" and line["status"] == 200]
        assert [line["key_id"] for line in analysed] == ["newsroom"]
        assert analysed[0]["image"] == "1536x2048"
    assert problems == []
