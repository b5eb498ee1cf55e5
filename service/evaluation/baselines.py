"""Trivial baselines scored beside the model, so each number has its floor next to it: a
constant map and error-level analysis (ELA). Recipes in docs/evaluation.md."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from spancore.cues import error_level

Heatmap = np.ndarray  # float32 [H, W] in 0..1


class Scored(NamedTuple):
    """A method's map with its own image score (the served model's: spancore.clones.fold_in),
    where the score is not the map's top-1 % mean."""
    heatmap: Heatmap
    score: float


Predict = Callable[[np.ndarray], "Heatmap | Scored"]  # RGB uint8 [H, W, 3] -> heatmap (or heatmap and score)

# Error-level analysis recipe (docs/evaluation.md). Quality 90 is the customary ELA setting.
ELA_QUALITY = 90
ELA_BOX_RADIUS = 2  # 5x5 mean: light smoothing turns per-pixel JPEG noise into a regional signal
CONSTANT_LEVEL = 0.5


def constant_map(rgb: np.ndarray) -> Heatmap:
    """The floor: the same score everywhere (pixel AUC 0.5 by the tie rule)."""
    return np.full(rgb.shape[:2], CONSTANT_LEVEL, dtype=np.float32)


def _box_blur(values: np.ndarray, radius: int) -> np.ndarray:
    # Separable mean over a (2r+1)^2 window with replicated edges. Written out because
    # Pillow's blurs do not take float ("F") images and rounding to 8 bits would erase
    # the small differences ELA lives on.
    size = 2 * radius + 1
    padded = np.pad(values, radius, mode="edge").astype(np.float64)
    for axis in (0, 1):
        summed = np.cumsum(padded, axis=axis)
        summed = np.concatenate([np.zeros_like(summed.take([0], axis=axis)), summed], axis=axis)
        n = summed.shape[axis]
        padded = (summed.take(range(size, n), axis=axis) - summed.take(range(0, n - size), axis=axis)) / size
    return padded.astype(np.float32)


def ela_map(rgb: np.ndarray, quality: int = ELA_QUALITY, radius: int = ELA_BOX_RADIUS) -> Heatmap:
    """Error-level analysis: how much each pixel changes when re-saved as JPEG at `quality`.

    Recipe: Pillow JPEG re-save (default 4:2:0 chroma subsampling), absolute difference,
    maximum over the three channels, 5x5 box mean, divided by the image's maximum (0..1).
    """
    # The re-save is the model's own error-level cue (spancore.cues), so baseline and model agree.
    difference = error_level(np.ascontiguousarray(rgb, dtype=np.uint8), quality).max(axis=2).astype(np.float32)
    smoothed = _box_blur(difference, radius)
    peak = float(smoothed.max())
    return smoothed / peak if peak > 0 else smoothed
