"""service.decode on real camera files from ../shared/data/photos/exif-samples and on hostile bytes."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import hostile
from service.decode import InputError, decode_image, to_rgb_array
from spancore.testing import EXIF_SAMPLES

LIMIT = 80_000_000


def _decode(path_or_bytes, **kw):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return decode_image(data, max_pixels=kw.pop("max_pixels", LIMIT), **kw)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_exif_orientations_come_out_upright(kind, orientation):
    folder = EXIF_SAMPLES / "jpg" / "orientation"
    upright = _decode(folder / f"{kind}_1.jpg").rgb.astype(np.int16)
    decoded = _decode(folder / f"{kind}_{orientation}.jpg")
    stored = Image.open(folder / f"{kind}_{orientation}.jpg").size
    assert decoded.metadata.orientation == orientation
    assert decoded.metadata.orientation_applied == (orientation != 1)
    assert (decoded.metadata.original_width, decoded.metadata.original_height) == stored
    # Displayed size and content match the upright file (the samples are re-encodings of one photo).
    assert decoded.rgb.shape == upright.shape
    assert (decoded.metadata.width, decoded.metadata.height) == (upright.shape[1], upright.shape[0])
    # Compare 10x10 block means: JPEG re-encoding noise averages out, a wrong flip does not.
    assert _blocks(decoded.rgb).shape == _blocks(upright).shape
    error = np.abs(_blocks(decoded.rgb) - _blocks(upright)).mean()
    # The files differ a little (the digit drawn in the middle, re-encoding), a wrong flip a lot.
    assert error < 20, error
    for wrong in (decoded.rgb[:, ::-1], decoded.rgb[::-1]):
        assert np.abs(_blocks(wrong) - _blocks(upright)).mean() > 1.8 * error


def _blocks(rgb: np.ndarray, size: int = 10) -> np.ndarray:
    h, w = (rgb.shape[0] // size) * size, (rgb.shape[1] // size) * size
    return rgb[:h, :w].astype(np.float32).reshape(h // size, size, w // size, size, 3).mean(axis=(1, 3))


def test_transposed_orientation_differs_without_exif_handling():
    """Guard for the test above: the stored pixels of orientation 3 are really rotated."""
    folder = EXIF_SAMPLES / "jpg" / "orientation"
    upright = _decode(folder / "landscape_1.jpg").rgb.astype(np.int16)
    stored = np.asarray(Image.open(folder / "landscape_3.jpg").convert("RGB")).astype(np.int16)
    assert np.abs(stored - upright).mean() > 20


def test_metadata_of_a_camera_jpeg():
    meta = _decode(EXIF_SAMPLES / "jpg" / "Canon_40D.jpg").metadata
    assert meta.format == "JPEG"
    assert meta.camera == "Canon EOS 40D"
    assert meta.software == "GIMP 2.4.5"
    assert meta.captured == "2008:05:30 15:56:01"
    assert (meta.width, meta.height) == (100, 68)


@pytest.mark.parametrize("name", ["samplefilehub.heif", "IMG_5195.HEIC"])
def test_heic_from_a_phone(name):
    decoded = _decode(EXIF_SAMPLES / "heic" / name)
    assert decoded.metadata.format == "HEIF"
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3
    assert decoded.rgb.std() > 5  # real picture content, not a blank frame
    if name == "IMG_5195.HEIC":
        assert decoded.metadata.camera == "Apple iPhone 11 Pro Max"
        assert decoded.rgb.shape[:2] == (3313, 2566)


def test_tiff_with_alpha_is_composited_over_white():
    decoded = _decode(EXIF_SAMPLES / "tiff" / "Arbitro.tiff")
    stored = Image.open(EXIF_SAMPLES / "tiff" / "Arbitro.tiff")
    assert decoded.metadata.format == "TIFF" and decoded.metadata.mode == "RGBA" and decoded.metadata.has_alpha
    alpha = np.asarray(stored)[:, :, 3]
    assert decoded.rgb.shape == (*alpha.shape, 3)
    if (alpha == 0).any():
        assert (decoded.rgb[alpha == 0] == 255).all()


def test_png_with_alpha_made_from_a_real_photo():
    photo = Image.open(EXIF_SAMPLES / "jpg" / "exif-org" / "canon-ixus.jpg").convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, np.uint8)
    alpha[:, : photo.width // 2] = 0  # left half transparent
    photo.putalpha(Image.fromarray(alpha))
    decoded = _decode(_png_bytes(photo))
    assert decoded.metadata.format == "PNG" and decoded.metadata.has_alpha
    assert (decoded.rgb[:, : photo.width // 2] == 255).all()
    opaque = np.asarray(photo)[:, photo.width // 2 :, :3]
    assert np.array_equal(decoded.rgb[:, photo.width // 2 :], opaque)


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "CMYK", "1", "LA"])
def test_every_pixel_mode_becomes_rgb_uint8(mode):
    photo = Image.open(EXIF_SAMPLES / "jpg" / "Canon_PowerShot_S40.jpg")
    if mode == "I;16":
        gray = np.asarray(photo.convert("L")).astype(np.uint16) * 257  # full 16-bit range
        image = Image.fromarray(gray)
        assert image.mode.startswith("I;16")
        expected = np.asarray(photo.convert("L"))
    else:
        image = photo.convert(mode)
        expected = None
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    decoded = _decode(buffer.getvalue())
    assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (photo.height, photo.width, 3)
    if expected is not None:  # 16-bit scaled down, not clipped to white
        assert np.abs(decoded.rgb[:, :, 0].astype(int) - expected).max() <= 1


def test_float_mode_in_unit_range_is_scaled():
    image = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F")
    rgb = to_rgb_array(image)
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255


def test_webp_and_bmp_are_read_from_the_bytes():
    photo = Image.open(EXIF_SAMPLES / "jpg" / "Canon_PowerShot_S40.jpg")
    for fmt in ("WEBP", "BMP"):
        buffer = io.BytesIO()
        photo.save(buffer, format=fmt)
        assert _decode(buffer.getvalue()).metadata.format == fmt


def test_format_comes_from_bytes_not_name(tmp_path):
    """A PNG saved as .jpg is a PNG; text saved as .jpg is refused with 415."""
    png = _png_bytes(Image.open(EXIF_SAMPLES / "jpg" / "Canon_40D.jpg"))
    (tmp_path / "photo.jpg").write_bytes(png)
    assert _decode(tmp_path / "photo.jpg").metadata.format == "PNG"
    with pytest.raises(InputError) as caught:
        _decode(b"this is a text file, not a JPEG\n" * 10)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_format")


def test_truncated_jpeg_is_422():
    data = (EXIF_SAMPLES / "jpg" / "exif-org" / "fujifilm-dx10.jpg").read_bytes()
    with pytest.raises(InputError) as caught:
        _decode(data[: len(data) // 2])
    assert (caught.value.status, caught.value.code) == (422, "corrupt_image")
    assert "truncated" in caught.value.message


def test_empty_body_is_422():
    with pytest.raises(InputError) as caught:
        _decode(b"")
    assert caught.value.status == 422


def test_decompression_bomb_is_refused_from_the_header():
    bomb = hostile.png_declaring(30000, 30000)
    assert len(bomb) < 200
    with pytest.raises(InputError) as caught:
        _decode(bomb)
    assert (caught.value.status, caught.value.code) == (413, "too_many_pixels")
    assert "30000x30000" in caught.value.message


def test_pixel_limit_is_a_parameter():
    data = (EXIF_SAMPLES / "jpg" / "exif-org" / "fujifilm-dx10.jpg").read_bytes()  # 1024x768
    assert _decode(data, max_pixels=1024 * 768).rgb.shape == (768, 1024, 3)
    with pytest.raises(InputError) as caught:
        _decode(data, max_pixels=1024 * 768 - 1)
    assert caught.value.status == 413


def test_min_side():
    with pytest.raises(InputError) as caught:
        _decode(_png_bytes(Image.new("RGB", (200, 4))), min_side=8)
    assert (caught.value.status, caught.value.code) == (422, "image_too_small")


def test_hostile_metadata_files_decode_without_error():
    """jpg/invalid, jpg/tests and corrupted.jpg carry broken EXIF; the pixels are fine and must come out."""
    files = sorted((EXIF_SAMPLES / "jpg" / "invalid").glob("*.jpg")) + [EXIF_SAMPLES / "jpg" / "corrupted.jpg"]
    files += sorted((EXIF_SAMPLES / "jpg" / "tests").glob("*.jp*g"))
    assert len(files) >= 15
    for path in files:
        decoded = _decode(path)
        stored = Image.open(path).size
        assert sorted(decoded.rgb.shape[:2]) == sorted(stored[::-1]), path.name
