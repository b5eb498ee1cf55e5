"""Forensic layers (service/layers/) on real photos from ../shared/data with known edits made here:
each test makes an edit the layer is meant to see and checks that it sees it there, not elsewhere."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from service.decode import decode_image
from service.layers import ANALYSERS, DEFAULT_LAYERS, LAYER_NAMES, Photo, parse_layers, run_layer, run_layers
from service.layers import copy_move, jpeg_ghost, jpeg_structure, metadata, noise_level
from service.layers.base import decode_base64url
from spancore.testing import EXIF_SAMPLES, SHARED_DATA

CAMERAS = SHARED_DATA / "photos" / "cameras"
SUN = SHARED_DATA / "photos" / "sun-hays80"
URBAN = SHARED_DATA / "photos" / "urban100"
pytestmark = pytest.mark.skipif(not CAMERAS.is_dir(), reason=f"shared data not found at {SHARED_DATA}")


def photo_of(data: bytes) -> Photo:
    decoded = decode_image(data, max_pixels=50_000_000)
    return Photo(data=data, rgb=decoded.rgb, format=decoded.metadata.format, orientation=decoded.metadata.orientation)


def encode(rgb: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_pixels(rgb: np.ndarray, quality: int) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(encode(rgb, "JPEG", quality=quality))).convert("RGB"))


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A real photo (Sun-Hays 80), 384x256 crop: texture, edges and smooth areas."""
    path = sorted(SUN.glob("*.jpg"))[3]
    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[100:356, 100:484])


def inside_vs_outside(heatmap: np.ndarray, box: tuple[int, int, int, int]) -> tuple[float, float]:
    top, left, bottom, right = box
    inside = np.zeros(heatmap.shape, bool)
    inside[top:bottom, left:right] = True
    return float(heatmap[inside].mean()), float(heatmap[~inside].mean())


# ------------------------------------------------------------------ registry
def test_layer_names_parse_and_refuse_unknown_ones():
    assert parse_layers(None) == DEFAULT_LAYERS and "copymove" not in DEFAULT_LAYERS and "span" in DEFAULT_LAYERS
    assert parse_layers("all") == LAYER_NAMES
    assert parse_layers(" ela, noise,ela ") == ("ela", "noise")
    with pytest.raises(ValueError, match="unknown layer.*bogus"):
        parse_layers("ela,bogus")


def test_a_layer_that_breaks_on_a_file_answers_not_applicable(monkeypatch, scene):
    def broken(photo):
        raise RuntimeError("boom")

    monkeypatch.setitem(ANALYSERS, "noise", broken)
    result = run_layer("noise", photo_of(encode(scene)))
    assert not result.applicable and "RuntimeError: boom" in result.reason and result.milliseconds >= 0
    assert result.as_json()["reason"] == result.reason


@pytest.mark.parametrize("name", ["corrupted.jpg", "tests/87_OSError.jpg", "tests/36-memory_error.jpg",
                                  "tests/67-0_length_string.jpg", "invalid/image01551.jpg"])
def test_the_file_reading_layers_answer_on_hostile_metadata(name):
    path = EXIF_SAMPLES / "jpg" / name
    data = path.read_bytes()
    try:
        photo = photo_of(data)
    except Exception:  # noqa: BLE001 - not decodable: the API refuses it before any layer runs
        pytest.skip(f"{name} does not decode")
    readers = ("jpeg", "metadata", "c2pa")  # the layers that parse the file; the others see only pixels
    results = run_layers(readers, photo)
    assert set(results) == set(readers)
    for result in results.values():
        answer = json.loads(json.dumps(result.as_json()))  # JSON-serialisable as the API sends it
        assert answer["applicable"] or answer["reason"]


def test_map_png_is_url_safe_base64_of_a_greyscale_png(scene):
    result = run_layer("ela", photo_of(encode(scene)))
    text = result.as_json()["png_base64url"]
    assert "+" not in text and "/" not in text and "=" not in text
    image = Image.open(io.BytesIO(decode_base64url(text)))
    assert image.format == "PNG" and image.mode == "L" and image.size == (scene.shape[1], scene.shape[0])


# ------------------------------------------------------------------ pixel layers
def test_ela_is_brighter_on_a_region_saved_fewer_times(scene):
    base = jpeg_pixels(jpeg_pixels(scene, 75), 75)  # the photo: saved twice at 75
    edited = base.copy()
    edited[64:192, 128:256] = scene[64:192, 128:256]  # a region never compressed (pasted from the original)
    result = run_layer("ela", photo_of(encode(edited)))
    inside, outside = inside_vs_outside(result.heatmap, (64, 128, 192, 256))
    assert inside > 1.5 * outside, (inside, outside)


def test_jpeg_ghost_finds_the_region_saved_at_another_quality(scene):
    composite = jpeg_pixels(scene, 90)
    composite[64:192, 128:256] = jpeg_pixels(scene, 60)[64:192, 128:256]  # Farid's experiment
    result = run_layer("ghost", photo_of(encode(composite)))
    assert result.summary["dominant_quality"] == 90
    inside, outside = inside_vs_outside(result.heatmap, (64, 128, 192, 256))
    assert inside > 0.5 and outside < 0.2, (inside, outside)
    assert result.summary["ghost_fraction"] > 0.1
    curves = jpeg_ghost.difference_curves(composite)
    region_best = np.asarray(jpeg_ghost.QUALITIES)[curves[:, 5:11, 9:15].mean(axis=(1, 2)).argmin()]
    assert region_best == 60  # the region's own minimum sits at the quality it was saved at


def test_noise_layer_marks_a_region_with_added_noise(scene):
    rng = np.random.default_rng(1)
    noisy = scene.astype(np.float32)
    noisy[64:192, 128:256] += rng.normal(0, 8, (128, 128, 3))
    edited = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    result = run_layer("noise", photo_of(encode(edited)))
    inside, outside = inside_vs_outside(result.heatmap, (64, 128, 192, 256))
    assert inside > 0.5 and inside > 3 * outside, (inside, outside)
    sigma = noise_level.local_sigma(noise_level.grey(edited))
    assert np.median(sigma[5:11, 9:15]) > 4 * np.median(sigma[:, :6])


def test_copy_move_recovers_the_copied_region_and_its_shift():
    rgb = np.ascontiguousarray(np.asarray(Image.open(sorted(SUN.glob("*.jpg"))[5]).convert("RGB"))[:480, :640])
    edited = rgb.copy()
    edited[300:400, 420:540] = rgb[60:160, 60:180]  # copy a 120x100 patch down and right by (360, 240)
    result = run_layer("copymove", photo_of(encode(edited)))
    assert result.applicable and result.summary["found"]
    region = result.summary["regions"][0]
    assert region["transform"]["translation"] == pytest.approx([360, 240], abs=3)
    assert abs(region["transform"]["rotation_degrees"]) < 2 and region["transform"]["scale"] == pytest.approx(1, abs=0.03)
    inside_target, outside = inside_vs_outside(result.heatmap, (300, 420, 400, 540))
    inside_source, _ = inside_vs_outside(result.heatmap, (60, 60, 160, 180))
    assert inside_target > 0.5 and inside_source > 0.5 and outside < 0.1
    assert all(len(match) == 4 for match in region["matches"])
    # A copy carries its source's noise: the residuals correlate almost perfectly (JPEG q90 after the copy).
    assert region["residual_correlation"] > 0.9


def test_copy_move_rejects_a_facade_that_repeats_itself():
    """An untouched Urban100 facade: rows of identical windows give SIFT groups with 22 and more
    matches on one translation (found as copies before the residual check), but each window has
    its own noise, so the residuals do not correlate: nothing is marked, and the candidates are
    listed as rejected for an analyst to see."""
    path = URBAN / "img_002.jpg"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    groups, _, _ = copy_move.keypoint_groups(rgb)
    assert max(len(group["source"]) for group in groups) >= 20  # the structure does repeat
    result = run_layer("copymove", photo_of(path.read_bytes()))
    summary = result.summary
    assert not summary["found"] and summary["n_regions"] == 0 and result.heatmap.max() == 0
    assert len(summary["rejected"]) == len(groups)
    assert all(r["residual_correlation"] < summary["min_residual_correlation"] for r in summary["rejected"])


def test_residual_correlation_tells_a_copy_from_a_re_shot_repeat():
    """The check itself: the same patch pasted (copy) vs the same patch with fresh sensor-like noise
    (a repeat: same structure, its own noise)."""
    rng = np.random.default_rng(0)
    rgb = np.ascontiguousarray(np.asarray(Image.open(sorted(SUN.glob("*.jpg"))[5]).convert("RGB"))[:256, :384])
    clean = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(2)), np.float64)  # structure only
    noisy = lambda: np.clip(clean + rng.normal(0, 4, clean.shape), 0, 255).astype(np.uint8)  # noqa: E731
    copied, repeated = noisy(), noisy()
    copied[150:230, 250:350] = copied[20:100, 20:120]
    repeated[150:230, 250:350] = noisy()[20:100, 20:120]
    shift = np.array([[1.0, 0.0, 230.0], [0.0, 1.0, 130.0]])
    target = np.zeros(rgb.shape[:2], bool)
    target[150:230, 250:350] = True
    assert copy_move.residual_correlation(copy_move.noise_residual(copied), shift, target) > 0.95
    assert copy_move.residual_correlation(copy_move.noise_residual(repeated), shift, target) < 0.3


def test_copy_move_on_an_untouched_camera_photo_finds_little():
    data = (CAMERAS / "Canon_PowerShot_A80.jpg").read_bytes()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((800, 800))
    result = run_layer("copymove", photo_of(encode(np.asarray(image), "JPEG", quality=92)))
    assert result.summary["copied_fraction"] < 0.05


def test_copy_move_without_opencv_is_not_applicable(monkeypatch, scene):
    import builtins

    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("no cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    result = run_layer("copymove", photo_of(encode(scene)))
    assert not result.applicable and "OpenCV is not installed" in result.reason


# ------------------------------------------------------------------ JPEG structure
@pytest.mark.parametrize("quality", [50, 75, 95])
def test_jpeg_tables_of_a_libjpeg_file_give_its_quality(scene, quality):
    result = run_layer("jpeg", photo_of(encode(scene, "JPEG", quality=quality)))
    assert result.summary["implied_quality"] == quality and result.summary["standard_tables"]
    assert "libjpeg" in result.summary["encoder"]
    assert result.summary["tables"]["0"] == jpeg_structure.ijg_table(jpeg_structure.STANDARD_LUMINANCE, quality).tolist()


def test_jpeg_tables_of_a_camera_file_name_the_camera_and_a_resave_is_flagged():
    data = (CAMERAS / "Canon_IXUS_300.jpg").read_bytes()
    photo = photo_of(data)
    original = jpeg_structure.analyse(photo)
    assert original.summary["exif_camera"] == "Canon DIGITAL IXUS 300"
    assert not original.summary["standard_tables"]
    assert any("IXUS 300" in name for name in original.summary["matching_cameras"])
    assert original.summary["warnings"] == []
    exif = Image.open(io.BytesIO(data)).info["exif"]
    resaved = jpeg_structure.analyse(photo_of(encode(photo.rgb, "JPEG", quality=88, exif=exif)))
    assert resaved.summary["standard_tables"] and "re-saved by software" in resaved.summary["warnings"][0]


def test_jpeg_grid_marks_a_region_pasted_off_the_grid(scene):
    big = np.asarray(Image.open(sorted(SUN.glob("*.jpg"))[3]).convert("RGB"))[:512, :512]
    compressed = jpeg_pixels(np.ascontiguousarray(big), 40)
    edited = compressed[:256, :384].copy()
    edited[64:192, 128:256] = compressed[64 + 3:192 + 3, 128 + 5:256 + 5]  # the same photo's blocks, shifted
    result = run_layer("jpeg", photo_of(encode(edited, "JPEG", quality=98)))
    grid = result.summary["grid"]
    assert grid["readable"] and (grid["column_phase"], grid["row_phase"]) == (7, 7)
    inside, outside = inside_vs_outside(result.heatmap, (64, 128, 192, 256))
    assert inside > 0.5 and outside < 0.2, (inside, outside)


def test_jpeg_layer_is_not_applicable_to_a_png(scene):
    result = run_layer("jpeg", photo_of(encode(scene)))
    assert not result.applicable and "not a JPEG" in result.reason


# ------------------------------------------------------------------ metadata
def test_metadata_of_a_camera_file_edited_in_gimp():
    result = run_layer("metadata", photo_of((EXIF_SAMPLES / "jpg" / "Canon_40D.jpg").read_bytes()))
    summary = result.summary
    assert "Canon EOS 40D" in summary["camera"] and summary["captured"] == "2008:05:30 15:56:01"
    assert summary["editors"] == ["GIMP 2.4.5"]
    assert any("after capture" in finding for finding in summary["findings"])
    json.dumps(result.as_json())


def test_metadata_reads_xmp_and_iptc():
    summary = run_layer("metadata", photo_of((EXIF_SAMPLES / "jpg" / "xmp" / "BlueSquare.jpg").read_bytes())).summary
    assert summary["xmp"]["CreatorTool"].startswith("Adobe Photoshop")
    assert "Photoshop CS2" in summary["iptc"]["caption"]
    assert "Adobe Photoshop CS2 Macintosh" in summary["editors"]


def test_metadata_of_a_stripped_file_is_not_applicable(scene):
    result = run_layer("metadata", photo_of(encode(scene, "JPEG", quality=90)))
    assert not result.applicable and "no EXIF, XMP or IPTC" in result.reason


def test_thumbnail_matches_an_untouched_photo_and_not_an_edited_one():
    data = (CAMERAS / "Canon_PowerShot_A80.jpg").read_bytes()
    untouched = run_layer("metadata", photo_of(data)).summary["thumbnail"]
    assert untouched["consistent"], untouched
    image = Image.open(io.BytesIO(data))
    exif = image.info["exif"]  # the original EXIF, thumbnail included, onto edited pixels
    pixels = np.asarray(image.convert("RGB")).copy()
    height, width = pixels.shape[:2]
    pixels[height // 4: height // 2, width // 4: width // 2] = 255  # a large white patch
    edited = run_layer("metadata", photo_of(encode(pixels, "JPEG", quality=90, exif=exif))).summary["thumbnail"]
    assert not edited["consistent"] and "changed after" in edited["verdict"]
    assert edited["worst_region_difference"] > metadata.THUMB_REGION_LIMIT


def test_metadata_of_a_heic_phone_photo():
    summary = run_layer("metadata", photo_of((EXIF_SAMPLES / "heic" / "IMG_5195.HEIC").read_bytes())).summary
    assert "iPhone" in summary["camera"] and summary["captured"]
