"""`span scan --layers ...`: forensic layers beside each heatmap, and their figures in the summary.

The layers are computed in this process from the file's bytes (with `--server` too: they need
no model). Each pixel layer's map is written as `<name>.<layer>.png` (8-bit greyscale, white =
1, like the heatmap); every layer's figures go into the image's record, and a few headline
figures per layer become summary columns (empty where the layer does not apply to the file;
the reason is in summary.json).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from service.layers import ANALYSERS, LayerResult, Photo, run_layer
from service.render import heatmap_png

# Summary columns per layer: column name -> how to read it from the layer's summary.
COLUMNS: dict[str, dict[str, Callable[[dict], Any]]] = {
    "ela": {"ela_bright_fraction": lambda s: s["bright_fraction"]},
    "ghost": {"ghost_dominant_quality": lambda s: s["dominant_quality"], "ghost_fraction": lambda s: s["ghost_fraction"]},
    "noise": {"noise_median_sigma": lambda s: s["median_sigma"], "noise_off_level_fraction": lambda s: s["off_level_fraction"]},
    "jpeg": {"jpeg_quality": lambda s: s["implied_quality"], "jpeg_standard_tables": lambda s: s["standard_tables"],
             "jpeg_grid_misaligned_fraction": lambda s: s["grid"]["misaligned_fraction"]},
    "copymove": {"copymove_regions": lambda s: s["n_regions"], "copymove_fraction": lambda s: s["copied_fraction"]},
    "metadata": {"metadata_camera": lambda s: s["camera"], "metadata_findings": lambda s: " | ".join(s["findings"])},
    "c2pa": {"c2pa_verdict": lambda s: s["verdict"]},
}


def parse(text: str | None) -> tuple[str, ...]:
    """--layers: names of layers other than the model's ('span' is the heatmap, always written),
    or 'all'. Raises ValueError naming the unknown ones."""
    if not text:
        return ()
    names = tuple(ANALYSERS) if text.strip() == "all" else tuple(
        dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [name for name in names if name not in ANALYSERS]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(ANALYSERS)} or all")
    return names


def compute(data: bytes, rgb, image_format: str, orientation: int | None, names: Sequence[str]) -> dict[str, LayerResult]:
    photo = Photo(data=data, rgb=rgb, format=image_format, orientation=orientation)
    return {name: run_layer(name, photo) for name in names}


def map_png(result: LayerResult) -> bytes | None:
    return heatmap_png(result.heatmap) if result.applicable and result.heatmap is not None else None


def record(results: dict[str, LayerResult]) -> dict[str, Any]:
    """What the image's record keeps of each layer (no pictures: the maps are files beside it)."""
    return {name: result.as_json(include_png=False) for name, result in results.items()}


def summary_fields(names: Sequence[str]) -> list[str]:
    return [column for name in names for column in COLUMNS[name]]


def summary_cells(names: Sequence[str], layers: dict[str, Any] | None) -> dict[str, Any]:
    """The summary columns of one image, from its record's layers (None where a layer did not apply)."""
    cells: dict[str, Any] = {}
    for name in names:
        section = (layers or {}).get(name) or {}
        for column, read in COLUMNS[name].items():
            try:
                cells[column] = read(section["summary"]) if section.get("applicable") else None
            except (KeyError, TypeError):
                cells[column] = None
    return cells
