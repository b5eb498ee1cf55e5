"""Synthesis kind "deep-inpaint": an object or region removed by the shipped DeepFill-style
generator (weights/inpaint/deepfill.onnx on ONNX Runtime), the way learned content-aware
fill removes things, beside synthesis.removal's OpenCV and clone-stamp fills.

Off by default (share 0 in synthesis.DEFAULT_KIND_WEIGHTS); a training config turns it on
with e.g. ``"kind_weights": {..., "deep-inpaint": 0.1}`` in its stage 2 settings. Each
DataLoader worker builds its own ONNX Runtime session once (spancore.inpaint.inpainter is cached
per process) with one thread, as the workers' OpenCV does.
"""
from __future__ import annotations

import numpy as np

from spancore.inpaint import inpainter


def deep_inpaint_removal(rng: np.random.Generator, host: np.ndarray, seg: np.ndarray | None,
                         uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(image, truth mask): a region (BSDS object or random shape, 1-12% of the frame, as
    synthesis.removal draws it) filled by the generator; pixels outside it are untouched."""
    from models import synthesis  # synthesis dispatches here: import it lazily

    h, w = host.shape[:2]
    mask = synthesis.region(rng, seg, h, w, 0.01, 0.12, uniform=uniform)
    filled, _ = inpainter().fill(host, mask.astype(np.uint8))
    return filled, (mask >= 0.5).astype(np.float32)
