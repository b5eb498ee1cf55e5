"""spancore.clones: translated copies found from the noise residual, and folded into the answer."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from spancore import clones
from spancore.clones import CloneResult, find_clones, fold_in


def _photo(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth scene with sensor-like noise: every pixel's noise is its own."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    scene = 120 + 60 * np.sin(x / 37.0) * np.cos(y / 53.0) + 0.15 * x
    noisy = scene[..., None] + rng.normal(0, 6, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _with_copy(photo: np.ndarray, box=(40, 30, 60, 70), shift=(110, 150)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """photo with the block (top, left, height, width) copied by shift (dy, dx); (forgery, source, target)."""
    top, left, height, width = box
    dy, dx = shift
    forged = photo.copy()
    forged[top + dy:top + dy + height, left + dx:left + dx + width] = photo[top:top + height, left:left + width]
    source = np.zeros(photo.shape[:2], bool)
    source[top:top + height, left:left + width] = True
    target = np.zeros_like(source)
    target[top + dy:top + dy + height, left + dx:left + dx + width] = True
    return forged, source, target


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))


def test_a_lossless_copy_is_found_with_its_shift_and_both_regions():
    forged, source, target = _with_copy(_photo())
    result = find_clones(forged)
    assert result.found and result.scale == 1
    best = result.clones[0]
    assert best.shift == (110, 150)
    assert best.as_json()["shift"] == [150, 110]  # [dx, dy], as the API answers
    assert best.correlation > 0.99
    for region in (source, target):
        assert result.mask[region].mean() > 0.9
    # Outside the copies, only a seam of at most half a window (the windows that straddle them).
    near = np.pad(source | target, clones.WINDOW // 2 + 1)
    near = np.lib.stride_tricks.sliding_window_view(near, (clones.WINDOW + 2,) * 2).any(axis=(2, 3))
    assert not result.mask[~near].any()


def test_the_untouched_photo_has_no_clone():
    result = find_clones(_photo())
    assert not result.found and result.confidence == 0.0 and not result.mask.any()


def _textured_photo(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """Content with detail at a few pixels' scale (blurred random texture, like foliage or
    gravel) plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 1, (height + 8, width + 8))
    texture = sum(texture[i:i + height, j:j + width] for i in range(0, 9, 2) for j in range(0, 9, 2))  # ~4 px grain
    scene = 128 + 40 * texture / texture.std()
    return np.clip(scene[..., None] + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8)


def test_a_textured_copy_resaved_as_jpeg_75_is_found_in_the_coarse_band():
    """JPEG 75 re-quantises the fine noise differently on the two copies (they sit at different
    phases of the 8x8 grid: shift 110 x 150), but keeps the copied texture's coarser band."""
    forged, source, target = _with_copy(_textured_photo(seed=4))
    result = find_clones(_jpeg(forged, 75))
    assert result.found and result.clones[0].shift == (110, 150)
    assert result.clones[0].correlation >= clones.COARSE_MIN_CLONE_CORRELATION
    assert result.mask[target].mean() > 0.8 and result.mask[source].mean() > 0.8
    assert not find_clones(_jpeg(_textured_photo(seed=4), 75)).found


def test_a_copy_resaved_as_jpeg_is_found_only_while_its_noise_survives():
    """Quality 100 keeps the copy's noise; quality 75 re-quantises it away, and a copy of a
    smooth scene has no coarser texture to fall back on (the documented limit)."""
    forged, _, target = _with_copy(_photo(seed=3))
    result = find_clones(_jpeg(forged, 100))
    assert result.found and result.clones[0].shift == (110, 150)
    assert result.mask[target].mean() > 0.8
    assert not find_clones(_jpeg(forged, 75)).found


def test_a_repeating_pattern_is_not_a_clone():
    """Stripes repeat every 24 px at every shift along them: structure, not a copy of the noise."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:240, 0:320]
    stripes = 128 + 80 * np.sign(np.sin(2 * np.pi * (x + 0.5 * y) / 24.0))
    photo = np.clip(stripes[..., None] + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    assert not find_clones(photo).found


@pytest.mark.parametrize("photo", [np.full((200, 300, 3), 128, np.uint8), np.zeros((12, 20, 3), np.uint8)],
                         ids=["flat", "tiny"])
def test_flat_and_tiny_photos_have_no_clone(photo):
    result = find_clones(photo)
    assert not result.found and result.mask.shape == photo.shape[:2]


def test_a_large_photo_is_searched_binned(monkeypatch):
    monkeypatch.setattr(clones, "MAX_PIXELS", 200 * 240)
    forged, source, target = _with_copy(_photo(400, 480), box=(40, 30, 100, 120), shift=(200, 250))
    result = find_clones(forged)  # 2x2 bins: an even shift moves whole bins
    assert result.scale == 2
    assert result.found and result.clones[0].shift == (200, 250)
    assert result.mask.shape == forged.shape[:2]
    assert result.mask[target].mean() > 0.5


def test_fold_in_raises_the_map_on_the_clones_and_combines_the_scores():
    heatmap = np.full((4, 5), 0.1, np.float32)
    heatmap[0, 0] = 0.99
    mask = np.zeros((4, 5), bool)
    mask[2:, 3:] = True
    mask[0, 0] = True
    found = CloneResult(clones=[clones.Clone(shift=(2, 3), area_fraction=0.1, correlation=0.96)], mask=mask)
    folded, score = fold_in(heatmap, 0.5, found)
    assert folded.dtype == np.float32
    assert np.allclose(folded[2:, 3:], 0.96) and folded[0, 0] == pytest.approx(0.99)  # never lowered
    assert np.allclose(folded[~mask], 0.1)
    assert score == pytest.approx(1 - 0.5 * 0.04)


def test_fold_in_without_a_clone_is_the_model_alone():
    heatmap = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    folded, score = fold_in(heatmap, 0.42, CloneResult(mask=np.zeros((6, 6), bool)))
    assert folded is heatmap and score == 0.42


def test_exact_repeats_give_a_lossless_copys_shift_and_nothing_on_the_untouched_photo():
    forged, _, _ = _with_copy(_photo(seed=6), box=(20, 20, 30, 30), shift=(105, 140))
    everywhere = np.ones(forged.shape[:2], bool)
    assert clones.exact_repeat_shifts(forged, everywhere)[0] == (105, 140)
    assert clones.exact_repeat_shifts(_photo(seed=6), everywhere) == []
    # blocks whose centre is not textured are left out: with none textured, nothing repeats
    assert clones.exact_repeat_shifts(forged, np.zeros_like(everywhere)) == []


def test_a_copy_the_correlation_peak_misses_is_found_through_its_exact_repeats(monkeypatch):
    """The exact-repeat candidates stand on their own: with the photo-wide correlation's list
    emptied, a lossless copy is still found, with its shift and both regions."""
    monkeypatch.setattr(clones, "candidate_shifts", lambda residual: [])
    forged, source, target = _with_copy(_photo(seed=7))
    result = find_clones(forged)
    assert result.found and result.clones[0].shift == (110, 150)
    assert result.mask[source].mean() > 0.9 and result.mask[target].mean() > 0.9
    assert not find_clones(_photo(seed=7)).found


def test_a_tiled_pattern_repeats_too_often_to_be_an_exact_candidate():
    """Identical tiles (a rendered pattern) share one block value many times: not a copy."""
    rng = np.random.default_rng(8)
    tile = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    tiled = np.tile(tile, (12, 16, 1))
    assert clones.exact_repeat_shifts(tiled, np.ones(tiled.shape[:2], bool)) == []


@pytest.mark.parametrize("scale", [2, 3, 5])
def test_binning_sums_whole_bins_and_drops_the_ragged_edge(scale):
    rgb = np.random.default_rng(scale).integers(0, 256, (61, 47, 3), dtype=np.uint8)
    h, w = 61 // scale * scale, 47 // scale * scale
    expected = rgb[:h, :w].astype(np.uint32).reshape(h // scale, scale, w // scale, scale, 3).sum(axis=(1, 3))
    binned = clones._binned(rgb, scale)
    assert binned.dtype == np.uint32 and np.array_equal(binned, expected)
