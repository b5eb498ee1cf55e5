"""Error level analysis (ELA): how much each region changes when the photo is re-saved as JPEG.

Regions saved fewer times than the rest, or pasted from a photo of another quality, settle
differently on re-saving (Krawetz, "A picture's worth", 2007). The recipe is the one
`span evaluate` scores as its ELA baseline, so the layer and the evaluation agree.
"""
from __future__ import annotations

import numpy as np

from service.evaluation.baselines import ELA_QUALITY, ela_map
from service.layers.base import LayerResult, Photo

NAME = "ela"


def analyse(photo: Photo, quality: int = ELA_QUALITY) -> LayerResult:
    heatmap = ela_map(photo.rgb, quality=quality)
    return LayerResult(
        name=NAME, applicable=True, heatmap=heatmap,
        summary={
            "quality": quality,
            "mean": round(float(heatmap.mean()), 4),
            "bright_fraction": round(float(np.count_nonzero(heatmap >= 0.5) / heatmap.size), 4),
            "normalisation": "per-image maximum: 1 is the photo's largest error level, not an absolute scale",
        },
    )
