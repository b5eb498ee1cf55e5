"""Noise level: a local estimate of the sensor noise, so regions with another noise level stand out.

A spliced region usually comes from another camera, ISO or processing chain, and blurring or
resampling a region wipes its noise out. The residual is Immerkaer's high-pass (the second
difference in both directions, "Fast noise variance estimation", CVIU 1996), which cancels
smooth shading and leaves noise; per 16x16 region the median of its absolute value gives
sigma (the median rather than Immerkaer's mean, so the few pixels on an edge do not count
as noise; texture that fills a whole region still does).

The map: |log2(sigma / median sigma)| / 2, clipped to 1, so a region with 4x (or 1/4) the
photo's typical noise is white and one at the typical level is black.
"""
from __future__ import annotations

import numpy as np

from service.layers.base import LayerResult, Photo, block_reduce, expand_blocks, grey

NAME = "noise"
REGION = 16
OCTAVES_TO_WHITE = 2.0  # log2 deviation shown as 1
SIGMA_FLOOR = 0.5  # 8-bit levels


def residual(luma: np.ndarray) -> np.ndarray:
    """|I * M| with M Immerkaer's 3x3 mask, same size as the input (edges replicated)."""
    p = np.pad(luma.astype(np.float32), 1, mode="edge")
    c = p[1:-1, 1:-1]
    n, s, w, e = p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]
    nw, ne, sw, se = p[:-2, :-2], p[:-2, 2:], p[2:, :-2], p[2:, 2:]
    return np.abs(4 * c - 2 * (n + s + w + e) + (nw + ne + sw + se))


def local_sigma(luma: np.ndarray, region: int = REGION) -> np.ndarray:
    """Sigma per region: the median of |residual| over the region, for Gaussian noise
    0.6745 x 6 sigma (the mask's weights have a root sum of squares of 6). The median ignores the
    minority of pixels on edges, which the mean would count as noise."""
    return block_reduce(residual(luma), region, reduce=np.median) / (0.6745 * 6.0)


def analyse(photo: Photo) -> LayerResult:
    luma = grey(photo.rgb)
    # Below the floor, levels are rounding, not noise: JPEG leaves flat skies with sigma ~0, and
    # their ratio to a noise-free reference would be meaningless.
    sigma = np.maximum(local_sigma(luma), SIGMA_FLOOR)
    reference = float(np.median(sigma))
    deviation = np.abs(np.log2(sigma / reference))
    heatmap = expand_blocks(np.clip(deviation / OCTAVES_TO_WHITE, 0, 1), REGION, luma.shape).astype(np.float32)
    return LayerResult(
        name=NAME, applicable=True, heatmap=heatmap,
        summary={
            "median_sigma": round(reference, 3),
            "sigma_p05": round(float(np.quantile(sigma, 0.05)), 3),
            "sigma_p95": round(float(np.quantile(sigma, 0.95)), 3),
            "off_level_fraction": round(float(np.mean(deviation >= 1.0)), 4),  # regions at 2x or 1/2 the level
            "region": REGION,
        },
    )
