"""spancore.cues: the fixed forensic signals training and serving share."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spancore.cues import BLOCK, CUE_NAMES, compute_cues, cue_shape, error_level

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _photo() -> np.ndarray:
    files = sorted((SHARED / "photos" / "bsds500" / "val").glob("*.jpg"))
    if not files:
        pytest.skip("../shared/data is not beside the checkout")
    return np.asarray(Image.open(files[0]).convert("RGB"))


@pytest.mark.parametrize("shape", [(1, 1), (7, 9), (8, 8), (17, 33), (64, 48)])
def test_shape_is_one_value_per_block_at_any_size(shape):
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    cues = compute_cues(rgb)
    assert cues.dtype == np.float32
    assert cues.shape == cue_shape(*shape) == (len(CUE_NAMES), -(-shape[0] // BLOCK), -(-shape[1] // BLOCK))
    assert np.isfinite(cues).all()


def test_same_bytes_every_call():
    rgb = _photo()
    assert compute_cues(rgb).tobytes() == compute_cues(rgb.copy()).tobytes()


def test_refuses_what_is_not_uint8_rgb():
    with pytest.raises(ValueError, match="uint8"):
        compute_cues(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        compute_cues(np.zeros((8, 8), np.uint8))


def test_relative_channels_are_centred_on_the_image_median():
    cues = compute_cues(_photo())
    half = len(CUE_NAMES) // 2
    for k in range(half):
        assert np.median(cues[half + k]) == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(cues[half + k], cues[k] - np.median(cues[k]), atol=1e-6)


def test_error_level_marks_a_region_with_another_compression_history():
    """A photo saved at q70 whose centre is pasted from a q95 save of itself: the centre
    re-compresses with more error at q90 (it was never quantised as coarsely)."""
    photo = _photo()[:256, :256]
    host, donor = _jpeg(photo, 70), _jpeg(photo, 98)
    forged = host.copy()
    forged[64:192, 64:192] = donor[64:192, 64:192]
    ela = compute_cues(forged)[CUE_NAMES.index("ela_q90")]
    inside = ela[8:24, 8:24].mean()
    outside = np.concatenate([ela[:6].ravel(), ela[-6:].ravel()]).mean()
    assert inside > outside + 0.2


def test_error_level_is_per_channel_absolute_difference():
    rgb = _photo()[:64, :64]
    level = error_level(rgb, 90)
    assert level.shape == rgb.shape and level.dtype == np.uint8
    again = _jpeg(rgb, 90)  # Pillow's defaults: 4:2:0, the settings the cues fix explicitly
    np.testing.assert_array_equal(level, np.abs(rgb.astype(int) - again.astype(int)).astype(np.uint8))


def test_blockiness_sees_the_grid_phase():
    """A JPEG saved on the image's own grid is blocky at phase (0, 0); the same JPEG shifted by
    4 pixels has its block edges inside the blocks instead."""
    photo = _photo()[:200, :200]
    aligned = _jpeg(photo, 60)[:192, :192]
    shifted = _jpeg(photo, 60)[4:196, 4:196]
    index = CUE_NAMES.index("blockiness")
    assert compute_cues(aligned)[index].mean() > compute_cues(shifted)[index].mean() + 0.02
