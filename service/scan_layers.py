"""`span scan --layers NAMES|all`: forensic layers beside each heatmap, and their figures in the summary.

The layers are computed where the image's outputs are written (this process, with `--server` too,
since they need no model; a Ray actor with `--ray`), from the file's bytes and the decoded photo.
Each pixel layer's map is written as `<name>.<layer>.png` (8-bit greyscale, white = 1, the size of
the heatmap); metadata and c2pa have no map and give figures only. Every layer's section (its
summary figures, or why it does not apply to this file) goes into the image's record, and a few
headline figures per layer become summary columns, empty where the layer does not apply.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from service.layers import ANALYSERS, LayerResult
from service.render import heatmap_png

# Every layer but the model's ('span' is the heatmap, which the scan always writes).
SCAN_LAYERS = tuple(ANALYSERS)

# Summary columns per layer: column name -> how to read it from the layer's summary.
COLUMNS: dict[str, dict[str, Callable[[dict], Any]]] = {
    "ela": {"ela_bright_fraction": lambda s: s["bright_fraction"]},
    "ghost": {"ghost_dominant_quality": lambda s: s["dominant_quality"],
              "ghost_fraction": lambda s: s["ghost_fraction"]},
    "noise": {"noise_median_sigma": lambda s: s["median_sigma"],
              "noise_off_level_fraction": lambda s: s["off_level_fraction"]},
    "jpeg": {"jpeg_quality": lambda s: s["implied_quality"], "jpeg_standard_tables": lambda s: s["standard_tables"],
             "jpeg_grid_misaligned_fraction": lambda s: s["grid"]["misaligned_fraction"]},
    "copymove": {"copymove_regions": lambda s: s["n_regions"], "copymove_fraction": lambda s: s["copied_fraction"]},
    "metadata": {"metadata_camera": lambda s: s["camera"], "metadata_findings": lambda s: " | ".join(s["findings"])},
    "c2pa": {"c2pa_verdict": lambda s: s["verdict"]},
}


def map_png(result: LayerResult) -> bytes | None:
    """The layer's map as the heatmap is written, or None (no map, or not applicable to this file)."""
    return heatmap_png(result.heatmap) if result.applicable and result.heatmap is not None else None


def section(result: LayerResult, map_name: str | None) -> dict[str, Any]:
    """What the image's record keeps of one layer: its figures (or reason) and its map's file name."""
    return {**result.as_json(include_png=False), **({"map": map_name} if map_name else {})}


def has_all(recorded: dict[str, Any] | None, names: Iterable[str]) -> bool:
    return all(name in (recorded or {}) for name in names)


def summary_fields(names: Iterable[str]) -> list[str]:
    """The summary columns of these layers, in the layers' own order."""
    present = set(names)
    return [column for name in SCAN_LAYERS if name in present for column in COLUMNS[name]]


def summary_cells(layers: dict[str, Any] | None) -> dict[str, Any]:
    """One image's summary columns, from its record's layer sections (None where a layer did not apply)."""
    cells: dict[str, Any] = {}
    for name, layer in (layers or {}).items():
        for column, read in COLUMNS.get(name, {}).items():
            try:
                cells[column] = read(layer["summary"]) if layer.get("applicable") else None
            except (KeyError, TypeError):
                cells[column] = None
    return cells
