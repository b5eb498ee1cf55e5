"""The forensic layers' maps as further methods scored on the benchmark's rows (`span evaluate --layers`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from service.evaluation.baselines import Predict
from service.evaluation.benchmark import EvaluationError


def layer_methods(names: Sequence[str]) -> dict[str, Predict]:
    """The forensic layers' maps as methods scored on the same rows (`span evaluate --layers`).

    Each map is computed from the decoded pixels alone, as the layer computes it for a photo
    (the JPEG layer's map is its misaligned-grid map, which reads no file structure), so a
    layer that needs the file's bytes to apply still has a map for every row."""
    from service.layers import PIXEL_LAYERS, Photo, copy_move, jpeg_ghost, jpeg_structure, noise_level
    from service.layers.base import grey

    def of(analyse: Callable) -> Predict:
        return lambda rgb: analyse(Photo(data=b"", rgb=rgb, format="pixels")).heatmap

    available: dict[str, Predict] = {
        "ghost": of(jpeg_ghost.analyse),
        "noise": of(noise_level.analyse),
        "jpeg": lambda rgb: jpeg_structure.grid_map(grey(rgb))[0],
        "copymove": of(copy_move.analyse),
    }
    unknown = [name for name in names if name not in PIXEL_LAYERS]
    if unknown:
        raise EvaluationError(f"not a pixel layer: {', '.join(unknown)}; choose from {', '.join(PIXEL_LAYERS)}")
    # "ela" is already scored, as the ELA baseline: the layer runs the same recipe.
    return {name: available[name] for name in names if name != "ela"}
