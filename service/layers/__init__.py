"""Forensic layers: independent views of one photo beside the model's heatmap.

Each layer is one module with `analyse(photo) -> LayerResult`; this registry runs the ones
asked for, times each, and turns any failure on a given file into "not applicable" with the
reason, so one layer never costs the others (or the request) their answer.

| name      | what it shows                                             | map |
|-----------|-----------------------------------------------------------|-----|
| ela       | error level at JPEG quality 90                            | yes |
| ghost     | JPEG ghost: regions whose best re-save quality differs    | yes |
| noise     | local noise level against the photo's typical level       | yes |
| jpeg      | quantisation tables, implied quality, encoder, 8x8 grid   | yes (misaligned grid) |
| copymove  | regions copied within the photo (SIFT + RANSAC, blocks)   | yes |
| metadata  | EXIF, XMP, IPTC, thumbnail, dates, software               | no  |
| c2pa      | Content Credentials: manifest, signer, actions, validity  | no  |

`span` (the model's heatmap) is a layer of the HTTP API too, run by the engine, not here.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from service.layers import content_credentials, copy_move, error_level, jpeg_ghost, jpeg_structure, metadata, noise_level
from service.layers.base import LayerResult, NotApplicable, Photo

log = logging.getLogger("span.layers")

ANALYSERS: dict[str, Callable[[Photo], LayerResult]] = {
    error_level.NAME: error_level.analyse,
    jpeg_ghost.NAME: jpeg_ghost.analyse,
    noise_level.NAME: noise_level.analyse,
    jpeg_structure.NAME: jpeg_structure.analyse,
    copy_move.NAME: copy_move.analyse,
    metadata.NAME: metadata.analyse,
    content_credentials.NAME: content_credentials.analyse,
}
MODEL_LAYER = "span"
LAYER_NAMES = (*ANALYSERS, MODEL_LAYER)
PIXEL_LAYERS = ("ela", "ghost", "noise", "jpeg", "copymove")
# Asked for explicitly: they cost several times the others at 1024x768 (bench/layers_cost.py).
SLOW_LAYERS = ("ghost", "copymove")
DEFAULT_LAYERS = tuple(name for name in LAYER_NAMES if name not in SLOW_LAYERS)


def parse_layers(text: str | None) -> tuple[str, ...]:
    """'ela,noise' -> ('ela', 'noise'); None or '' -> the defaults; 'all' -> every layer.
    Raises ValueError naming the unknown ones."""
    if text is None or not text.strip():
        return DEFAULT_LAYERS
    return choose_layers(text, LAYER_NAMES)


def choose_layers(text: str, among: Sequence[str], refusal: str = "unknown layer(s)") -> tuple[str, ...]:
    """'ela, noise,ela' -> ('ela', 'noise'); 'all' -> every one of `among`; '' -> ().
    The one check of layer names (POST /v1/analyze, span scan and span evaluate --layers):
    raises ValueError, `refusal` then the names that are not among them."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return tuple(among)
    unknown = [name for name in names if name not in among]
    if unknown:
        raise ValueError(f"{refusal} {', '.join(unknown)}; choose from {', '.join(among)} or 'all'")
    return tuple(dict.fromkeys(names))


def run_layer(name: str, photo: Photo) -> LayerResult:
    """One layer on one photo, timed; never raises for a problem with the file."""
    started = time.perf_counter()
    try:
        result = ANALYSERS[name](photo)
    except NotApplicable as reason:
        result = LayerResult.not_applicable(name, str(reason))
    except Exception as error:  # noqa: BLE001 - a layer failing on a file is that layer's answer, not a 500
        log.warning("layer %s failed on a %s file: %s", name, photo.format, error, exc_info=True)
        result = LayerResult.not_applicable(name, f"the layer failed on this file ({type(error).__name__}: {error})")
    result.milliseconds = (time.perf_counter() - started) * 1000
    return result


def run_layers(names: Iterable[str], photo: Photo) -> dict[str, LayerResult]:
    return {name: run_layer(name, photo) for name in names if name in ANALYSERS}


__all__ = ["ANALYSERS", "DEFAULT_LAYERS", "LAYER_NAMES", "LayerResult", "MODEL_LAYER", "NotApplicable", "PIXEL_LAYERS",
           "Photo", "SLOW_LAYERS", "choose_layers", "parse_layers", "run_layer", "run_layers"]
