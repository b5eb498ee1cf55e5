"""The evaluation report: the JSON written by `span evaluate --out`, the table and summary it
prints, the PNG grid of the first rows, and the score summary filed into the weights' manifest."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from service.evaluation.baselines import Heatmap
from service.evaluation.metrics import ImageResult, method_report
from service.render import colorize  # the colour map analysts see in the web page and overlays

METHODS = ("span", "constant", "ela")


@dataclass
class Grid:
    """Thumbnails of the first rows: photo | truth | one heatmap per method shown."""
    rows: int
    columns: tuple[str, ...] = ("photo", "truth", "span", "ela")
    cell: tuple[int, int] = (256, 192)
    tiles: list[tuple[str, list[Image.Image]]] = field(default_factory=list)

    def wants_more(self) -> bool:
        return len(self.tiles) < self.rows

    def add(self, label: str, rgb: np.ndarray, truth: np.ndarray | None, heatmaps: Mapping[str, Heatmap]) -> None:
        truth_tile = np.zeros(rgb.shape[:2], np.uint8) if truth is None else truth.astype(np.uint8) * 255
        images = [Image.fromarray(rgb), Image.fromarray(truth_tile)]
        blank = np.zeros(rgb.shape[:2], np.float32)
        images += [Image.fromarray(colorize(heatmaps.get(name, blank))) for name in self.columns[2:]]
        thumbs = []
        for image in images:
            image.thumbnail(self.cell, Image.Resampling.BILINEAR)
            thumbs.append(image.convert("RGB"))
        self.tiles.append((label, thumbs))

    def save(self, path: Path) -> None:
        width, height = self.cell
        header, caption, gap = 18, 14, 4
        canvas = Image.new("RGB", (len(self.columns) * (width + gap), header + len(self.tiles) * (height + caption + gap)), (24, 24, 24))
        draw = ImageDraw.Draw(canvas)
        for column, title in enumerate(self.columns):
            draw.text((column * (width + gap) + 4, 3), title, fill=(235, 235, 235))
        for row, (label, thumbs) in enumerate(self.tiles):
            top = header + row * (height + caption + gap)
            draw.text((4, top), label, fill=(200, 200, 200))
            for column, thumb in enumerate(thumbs):
                canvas.paste(thumb, (column * (width + gap) + (width - thumb.width) // 2, top + caption + (height - thumb.height) // 2))
        path.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path, format="PNG")


def build_report(
    results: Sequence[ImageResult],
    *,
    benchmark: Path,
    model: Mapping[str, Any],
    skipped: Sequence[Mapping[str, Any]],
    warnings: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    image_threshold: float,  # image_bacc's; the pixel decision is already in each row's metrics
    n_rows: int,
    seconds: float,
) -> dict[str, Any]:
    methods = list(results[0].scores) if results else list(METHODS)
    return {
        "model": dict(model),
        "manifest": str(benchmark),  # the benchmark CSV (key kept for readers of old reports)
        "n_rows": n_rows,
        "results": {method: method_report(results, method, image_threshold) for method in methods},
        "skipped": list(skipped),
        "warnings": list(warnings),
        "settings": dict(settings),
        "seconds": {
            "total": round(seconds, 2),
            **{f"mean_{name}": round(float(np.mean([r.seconds[name] for r in results])), 4) for name in methods if results},
        },
        "images": [result.as_json() for result in results],
    }


def _finite(value: Any) -> Any:
    """NaN or infinity would make invalid JSON; they mean a bug here, so refuse rather than hide them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a metric came out NaN or infinite; this is a bug in the evaluation")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_report(report: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")


TABLE_COLUMNS = (
    ("n", "n_images"), ("n_px", "n_pixel_images"), ("px_auc", "pixel_auc"), ("f1@t", "pixel_f1_fixed"),
    ("f1_best", "pixel_f1_best"), ("iou", "pixel_iou"), ("mcc", "pixel_mcc"), ("img_auc", "image_auc"),
    ("img_bacc", "image_bacc"), ("auc_inv", "pixel_auc_inv"), ("f1@t_inv", "pixel_f1_fixed_inv"),
)


def format_table(report: Mapping[str, Any]) -> str:
    """A compact text table: one line per method and dataset, overall first; '-' is undefined."""
    lines = [f"{'method':<9}{'dataset':<10}" + "".join(f"{title:>9}" for title, _ in TABLE_COLUMNS)]
    for method, block in report["results"].items():
        for dataset, values in [("all", block), *block["by_dataset"].items()]:
            cells = []
            for _, key in TABLE_COLUMNS:
                value = values[key]
                cells.append(f"{'-' if value is None else value if isinstance(value, int) else f'{value:.3f}':>9}")
            lines.append(f"{method:<9}{dataset[:9]:<10}" + "".join(cells))
    return "\n".join(lines)


def _cut(report: Mapping[str, Any]) -> str:
    cut = report["settings"].get("relative_cut") or 0.0
    image = report["settings"].get("image_threshold")
    return (f" (and {cut} of each map's peak)" if cut else "") + (f", image threshold {image}" if image is not None else "")


def format_summary(report: Mapping[str, Any], *, out: Path | None = None, grid: Path | None = None) -> str:
    """What the terminal shows after a run: the model, the table, what was left out, where the files went."""
    model = report["model"]
    lines = [f"model {model.get('name')} {model.get('version')} sha256 {str(model.get('sha256'))[:12]} "
             f"on {model.get('provider')}" + ("" if model.get("trained") else f"  ** {model.get('status')} **"),
             f"manifest {report['manifest']}: {report['n_rows']} rows, threshold {report['settings']['threshold']}"
             f"{_cut(report)}, "
             f"{report['seconds']['total']:.1f} s", "", format_table(report)]
    if report["skipped"]:
        lines += ["", f"skipped {len(report['skipped'])} row(s):"]
        lines += [f"  line {entry['line']} {entry['id']}: {entry['reason']}" for entry in report["skipped"]]
    if report["warnings"]:
        lines += ["", f"{len(report['warnings'])} warning(s):"]
        lines += [f"  line {entry['line']} {entry['id']}: {entry['warning']}" for entry in report["warnings"]]
    lines += [""] + [f"{what}: {path}" for what, path in (("report", out), ("grid", grid)) if path is not None]
    return "\n".join(lines).rstrip()


SCORE_KEYS = ("pixel_auc", "pixel_f1_fixed", "pixel_f1_best", "pixel_iou", "pixel_mcc", "image_auc", "image_bacc",
              "pixel_auc_inv", "pixel_f1_fixed_inv", "n_images", "n_pixel_images")


def score_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a report a model card quotes: every method's headline metrics, overall and per
    dataset, and what they were measured on."""
    def pick(values: Mapping[str, Any]) -> dict[str, Any]:
        return {key: values[key] for key in SCORE_KEYS if key in values}

    return {
        "manifest": report["manifest"],
        "n_rows": report["n_rows"],
        "skipped": len(report["skipped"]),
        "threshold": report["settings"]["threshold"],
        "relative_cut": report["settings"].get("relative_cut", 0.0),
        "image_threshold": report["settings"].get("image_threshold", report["settings"]["threshold"]),
        "large_image_policy": report["settings"]["engine"].get("large_image_policy"),
        # photos above it are resized before the network sees them: part of what the scores mean
        "max_working_pixels": report["settings"]["engine"].get("max_working_pixels"),
        # the clone search folded into span's answers (spancore.clones): part of what its scores mean
        "clones": report["model"].get("clones"),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "results": {method: {**pick(block), "by_dataset": {name: pick(v) for name, v in block["by_dataset"].items()}}
                    for method, block in report["results"].items()},
    }
