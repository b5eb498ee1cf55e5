"""JPEG ghost (Farid, "Exposing digital forgeries from JPEG ghosts", IEEE TIFS 2009).

Re-save the photo at a range of qualities and measure, per region, how much it changes. A
region last saved at quality q changes least when re-saved near q, so a region pasted from
a photo of another quality has its minimum ("ghost") at another quality than the rest.

The map: each 16x16 region's difference curve is normalised over the qualities tried
(Farid's eq. 4: 0 at the region's best quality, 1 at its worst); the photo's typical curve is
the median of those. A region's value is how far its curve dips below the typical one at any
quality: 0 for a region that re-saves like the rest of the photo, near 1 for a region whose
minimum sits where the rest of the photo changes most. Regions too flat to change at any
quality are 0. Ghosts show regions saved earlier at a lower quality than the photo.
"""
from __future__ import annotations

import numpy as np

from service.layers.base import LayerResult, Photo, block_reduce, expand_blocks
from spancore.cues import error_level

NAME = "ghost"
QUALITIES = tuple(range(50, 100, 5))  # 50, 55, ..., 95
REGION = 16
# A region "ghosts" elsewhere when its own best quality is at least this far from the photo's.
DISAGREEMENT_STEP = 10
GHOST_DIP = 0.3  # a region counts as a ghost in the summary from this dip on
FLAT_SPREAD = 0.25  # squared 8-bit levels between a region's best and worst quality


def difference_curves(rgb: np.ndarray, qualities=QUALITIES, region: int = REGION) -> np.ndarray:
    """[len(qualities), rows, cols]: mean squared change of each region when re-saved at each quality."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    curves = []
    for quality in qualities:
        # |photo - JPEG(photo, q)| per channel: the model's error-level cue (spancore.cues) at quality q.
        squared = (error_level(rgb, quality).astype(np.float32) ** 2).mean(axis=2)
        curves.append(block_reduce(squared, region))
    return np.stack(curves)


def analyse(photo: Photo) -> LayerResult:
    curves = difference_curves(photo.rgb)
    low, high = curves.min(axis=0), curves.max(axis=0)
    spread = high - low
    textured = spread >= FLAT_SPREAD  # flat regions barely change at any quality: their curve is noise
    normalised = (curves - low) / np.maximum(spread, 1e-6)  # Farid's eq. 4: 0 at the region's own best quality
    # The photo's typical curve; a ghost is a region whose curve dips where the typical one is high.
    typical = np.median(normalised[:, textured], axis=1) if textured.any() else np.ones(len(QUALITIES))
    dip = np.where(textured, np.clip((typical[:, None, None] - normalised).max(axis=0), 0.0, 1.0), 0.0)
    heatmap = expand_blocks(dip, REGION, photo.rgb.shape[:2]).astype(np.float32)
    best = np.asarray(QUALITIES)[curves.argmin(axis=0)]  # each region's own quality
    dominant = QUALITIES[int(typical.argmin())]
    ghosts = textured & (dip >= GHOST_DIP) & (np.abs(best - dominant) >= DISAGREEMENT_STEP)
    return LayerResult(
        name=NAME, applicable=True, heatmap=heatmap,
        summary={
            "qualities": list(QUALITIES),
            "dominant_quality": dominant,
            "typical_curve": [round(float(value), 3) for value in typical],
            "ghost_fraction": round(float(ghosts.mean()), 4),
            "ghost_qualities": sorted({int(q) for q in best[ghosts]}),
            "region": REGION,
        },
    )
