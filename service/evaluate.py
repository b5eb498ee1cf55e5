"""`span evaluate MANIFEST`: score exactly what ships on a benchmark manifest, beside trivial baselines.

The model is called through the same functions as the service (decode, engine.predict,
image_score), so the numbers are the numbers a user gets. Every metric is computed on
the same rows for three methods: the shipped model, a constant map and error-level
analysis (ELA), so each number has its floor next to it. Conventions are in
docs/evaluation.md; the short version:

- pixel metrics: per image, over rows whose mask holds both classes, then averaged;
  the map is scored as it is, and the better-of-map-or-inverse convention that papers
  use is reported beside it under the same keys suffixed `_inv`;
- image metrics: over all rows, a row is positive when its mask has a white pixel;
- an undefined number is null, with the reason under `notes`; the JSON never holds NaN.

ROC-AUC is implemented here (exact, rank-based, ties count one half) rather than
taken from scikit-learn: it is a dozen lines of numpy, and scikit-learn plus scipy
would add on the order of 100 MB to a runtime that is meant to stay lean.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from service.manifest import INT8_NAME, INT8_SUFFIX, ONNX_NAME
from spancore.cues import error_level
from service.render import colorize  # the colour map analysts see in the web page and overlays

Heatmap = np.ndarray  # float32 [H, W] in 0..1
Predict = Callable[[np.ndarray], Heatmap]  # RGB uint8 [H, W, 3] -> heatmap

REQUIRED_COLUMNS = ("id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license")
PIXEL_KEYS = ("pixel_auc", "pixel_f1_fixed", "pixel_f1_best", "pixel_iou", "pixel_mcc")
INVERSE_KEYS = tuple(f"{key}_inv" for key in PIXEL_KEYS)
METHODS = ("span", "constant", "ela")

# Error-level analysis recipe (docs/evaluation.md). Quality 90 is the customary ELA setting.
ELA_QUALITY = 90
ELA_BOX_RADIUS = 2  # 5x5 mean: light smoothing turns per-pixel JPEG noise into a regional signal
CONSTANT_LEVEL = 0.5


class EvaluationError(Exception):
    """Anything that stops an evaluation, with a message meant for the person who ran it."""


class BenchmarkManifestError(EvaluationError, ValueError):
    """The manifest as a whole is unusable (fatal): not found, not CSV, missing columns, no rows, duplicate ids."""


class RowError(EvaluationError, ValueError):
    """One row is unusable (missing file, undecodable image, mask of another size): skipped and reported."""


# --------------------------------------------------------------------------------------
# Metrics. Pure numpy, exact; tests compare them with brute-force counts.
# --------------------------------------------------------------------------------------

def _grouped_counts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives at each distinct score, distinct scores in ascending order."""
    values = np.asarray(scores).ravel()
    order = np.argsort(values)  # one sort per map; ties are grouped below, so stability is not needed
    ordered = values[order]
    last_of_group = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    positives = np.diff(np.cumsum(np.asarray(truth, dtype=bool).ravel()[order])[last_of_group], prepend=0)
    totals = np.diff(last_of_group + 1, prepend=0)
    return positives.astype(np.float64), (totals - positives).astype(np.float64)


def _auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney: each positive beats every negative scored lower and half of those scored the same.
    negatives_below = np.cumsum(negatives) - negatives
    return float(np.sum(positives * (negatives_below + 0.5 * negatives)) / (n_pos * n_neg))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Exact ROC-AUC (probability that a positive outscores a negative, ties count 1/2); None with one class."""
    return _auc_from_counts(*_grouped_counts(scores, truth))


def _best_f1(tp: np.ndarray, fp: np.ndarray, n_pos: float) -> float:
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P); predicting nothing gives 0.
    return float(np.max(2.0 * tp / np.maximum(tp + fp + n_pos, 1.0), initial=0.0))


@dataclass(frozen=True)
class Confusion:
    tp: float
    fp: float
    fn: float
    tn: float

    @classmethod
    def of(cls, predicted: np.ndarray, truth: np.ndarray) -> Confusion:
        predicted, truth = np.asarray(predicted, dtype=bool).ravel(), np.asarray(truth, dtype=bool).ravel()
        tp = int(np.count_nonzero(predicted & truth))
        n_pred, n_true = int(np.count_nonzero(predicted)), int(np.count_nonzero(truth))
        return cls(tp=tp, fp=n_pred - tp, fn=n_true - tp, tn=truth.size - n_pred - n_true + tp)

    def f1(self) -> float | None:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None

    def iou(self) -> float | None:
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else None

    def mcc(self) -> float:
        # Float products: pixel counts of a large image overflow nothing in float64. A zero
        # marginal (everything predicted one class) gives 0, scikit-learn's convention.
        product = (self.tp + self.fp) * (self.tp + self.fn) * (self.tn + self.fp) * (self.tn + self.fn)
        return (self.tp * self.tn - self.fp * self.fn) / math.sqrt(product) if product else 0.0

    def balanced_accuracy(self) -> float | None:
        positives, negatives = self.tp + self.fn, self.tn + self.fp
        if not positives or not negatives:
            return None
        return 0.5 * (self.tp / positives + self.tn / negatives)


def binarize(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """The service's decision: a pixel (or image) is called manipulated when its score reaches the threshold."""
    return np.asarray(heatmap) >= threshold


def pixel_metrics(heatmap: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Pixel metrics of one image, as is and with the better-of-map-or-inverse convention (`_inv`).

    `truth` must hold both classes (callers check: see `mask_problem`).
    The `_inv` value of each metric is, for this image, the larger of the metric on the map
    and on `1 - map`: per metric, as the papers' evaluation code does.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    truth = np.asarray(truth, dtype=bool)
    positives, negatives = _grouped_counts(heatmap, truth)
    n_pos = float(positives.sum())
    auc = _auc_from_counts(positives, negatives)
    if auc is None:
        raise ValueError("pixel metrics need a mask with both manipulated and pristine pixels")
    # Thresholds at every distinct score: calling "score >= v" manipulated keeps the groups
    # from v upwards (suffix sums); for the inverse map, from v downwards (prefix sums).
    tp_up, fp_up = np.cumsum(positives[::-1]), np.cumsum(negatives[::-1])
    tp_down, fp_down = np.cumsum(positives), np.cumsum(negatives)
    as_is = Confusion.of(binarize(heatmap, threshold), truth)
    inverse = Confusion.of(binarize(1.0 - heatmap, threshold), truth)
    values = {
        "pixel_auc": auc,
        "pixel_f1_fixed": as_is.f1(),
        "pixel_f1_best": _best_f1(tp_up, fp_up, n_pos),
        "pixel_iou": as_is.iou(),
        "pixel_mcc": as_is.mcc(),
    }
    inverse_values = {
        "pixel_auc": 1.0 - auc,
        "pixel_f1_fixed": inverse.f1(),
        "pixel_f1_best": _best_f1(tp_down, fp_down, n_pos),
        "pixel_iou": inverse.iou(),
        "pixel_mcc": inverse.mcc(),
    }
    # With positives present F1 and IoU are always defined, so max() never sees None here.
    values.update({f"{key}_inv": max(values[key], inverse_values[key]) for key in PIXEL_KEYS})
    return values


def image_metrics(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> tuple[dict[str, float | None], dict[str, str]]:
    """Image AUC and balanced accuracy at the threshold, with a reason for each one left undefined."""
    scores_array = np.asarray(scores, dtype=np.float64)
    labels_array = np.asarray(labels, dtype=bool)
    n_pos = int(labels_array.sum())
    n_neg = labels_array.size - n_pos
    values: dict[str, float | None] = {"image_auc": None, "image_bacc": None}
    notes: dict[str, str] = {}
    if n_pos and n_neg:
        values["image_auc"] = roc_auc(scores_array, labels_array)
        values["image_bacc"] = Confusion.of(binarize(scores_array, threshold), labels_array).balanced_accuracy()
    else:
        reason = f"undefined: only one class ({n_pos} manipulated, {n_neg} pristine rows)"
        notes = {"image_auc": reason, "image_bacc": reason}
    return values, notes


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchmarkRow:
    line: int  # line number in the CSV file, for messages
    id: str
    image: Path
    mask: Path | None  # None: pristine
    dataset: str
    kind: str
    fields: Mapping[str, str]


def read_benchmark_manifest(path: str | Path) -> list[BenchmarkRow]:
    """Read and check a manifest. Whole-file problems raise BenchmarkManifestError; missing files are found per row later."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkManifestError(f"manifest not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in REQUIRED_COLUMNS if name not in columns]
            if missing:
                raise BenchmarkManifestError(
                    f"{path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED_COLUMNS)}"
                    f" (found: {', '.join(columns) or 'no header'})"
                )
            records = [({(k or "").strip(): (v or "").strip() for k, v in record.items()}, reader.line_num) for record in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise BenchmarkManifestError(f"{path}: not a readable CSV file ({error})") from error
    if not records:
        raise BenchmarkManifestError(f"{path}: no rows")
    folder = path.parent
    rows: list[BenchmarkRow] = []
    seen: dict[str, int] = {}
    for record, line in records:
        row_id, image = record["id"], record["image"]
        if not row_id or not image:
            raise BenchmarkManifestError(f"{path}, line {line}: empty 'id' or 'image'")
        if row_id in seen:
            raise BenchmarkManifestError(f"{path}, line {line}: duplicate id {row_id!r} (first on line {seen[row_id]})")
        seen[row_id] = line
        rows.append(BenchmarkRow(
            line=line, id=row_id, image=folder / image,
            mask=folder / record["mask"] if record["mask"] else None,
            dataset=record["dataset"] or "unknown", kind=record["kind"], fields=record,
        ))
    return rows


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Binary mask (white, i.e. > 127 in 8-bit grey, = manipulated) that must match the image's (width, height)."""
    if not path.is_file():
        raise RowError(f"mask file not found: {path}")
    try:
        with Image.open(path) as mask_image:
            grey = mask_image.convert("L")
    except (OSError, SyntaxError, ValueError) as error:
        raise RowError(f"mask is not a readable image: {path} ({error})") from error
    if grey.size != size:
        raise RowError(
            f"mask size {grey.size[0]}x{grey.size[1]} differs from image size {size[0]}x{size[1]} "
            f"(image after EXIF orientation): {path}"
        )
    return np.asarray(grey) > 127


def mask_problem(truth: np.ndarray | None) -> str | None:
    """Why a row takes no part in pixel metrics, or None when it does."""
    if truth is None:
        return "pristine (no mask)"
    if not truth.any():
        return "mask is all black: no manipulated pixel, counted as pristine at image level"
    if truth.all():
        return "mask is all white: no pristine pixel, pixel metrics undefined"
    return None


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------

@dataclass
class ImageResult:
    row: BenchmarkRow
    label: bool  # manipulated at image level
    pixel_excluded: str | None
    scores: dict[str, float] = field(default_factory=dict)
    pixel: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.row.id, "dataset": self.row.dataset, "kind": self.row.kind, "label": int(self.label),
            "pixel_excluded": self.pixel_excluded, "score": self.scores, "pixel": self.pixel,
            "seconds": {name: round(value, 4) for name, value in self.seconds.items()},
        }


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def summarize(results: Sequence[ImageResult], method: str, threshold: float) -> dict[str, Any]:
    """The metric block of one method over some rows."""
    pixel_rows = [result for result in results if result.pixel_excluded is None]
    summary: dict[str, Any] = {
        "n_images": len(results),
        "n_pixel_images": len(pixel_rows),
        "n_manipulated": sum(result.label for result in results),
        "n_pristine": sum(not result.label for result in results),
    }
    notes: dict[str, str] = {}
    for key in PIXEL_KEYS + INVERSE_KEYS:
        summary[key] = _mean(result.pixel[method][key] for result in pixel_rows)
        if summary[key] is None:
            notes[key] = "undefined: no row with a mask holding both manipulated and pristine pixels"
    image_values, image_notes = image_metrics(
        [result.scores[method] for result in results], [result.label for result in results], threshold
    )
    summary.update(image_values)
    notes.update(image_notes)
    summary["notes"] = notes
    return summary


def method_report(results: Sequence[ImageResult], method: str, threshold: float) -> dict[str, Any]:
    report = summarize(results, method, threshold)
    datasets = sorted({result.row.dataset for result in results})
    report["by_dataset"] = {
        name: summarize([result for result in results if result.row.dataset == name], method, threshold)
        for name in datasets
    }
    # Which kind of forgery a method sees: splice, copy-move... per dataset ("casia2/copy-move").
    kinds = sorted({(result.row.dataset, result.row.kind) for result in results})
    report["by_kind"] = {
        f"{dataset}/{kind}": summarize([r for r in results if (r.row.dataset, r.row.kind) == (dataset, kind)],
                                       method, threshold)
        for dataset, kind in kinds
    }
    return report


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


def evaluate_rows(
    rows: Sequence[BenchmarkRow],
    *,
    load_image: Callable[[Path], np.ndarray],
    methods: Mapping[str, Predict],
    image_score: Callable[[Heatmap], float],
    threshold: float,
    grid: Grid | None = None,
    strict: bool = False,
    progress: bool = True,
) -> tuple[list[ImageResult], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every method over every row. Returns (results, skipped rows, warnings).

    A bad row (missing file, undecodable image, mask of another size, a method failing
    on it) is skipped and listed with its reason, or raised as RowError when `strict`.
    """
    from tqdm import tqdm

    results: list[ImageResult] = []
    skipped: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for row in tqdm(rows, desc="evaluate", unit="image", disable=not progress, file=sys.stderr):
        try:
            if not row.image.is_file():
                raise RowError(f"image file not found: {row.image}")
            rgb = load_image(row.image)
            height, width = rgb.shape[:2]
            truth = read_mask(row.mask, (width, height)) if row.mask is not None else None
            problem = mask_problem(truth)
            result = ImageResult(row=row, label=truth is not None and bool(truth.any()), pixel_excluded=problem)
            heatmaps = {}
            for name, predict in methods.items():
                started = time.perf_counter()
                heatmap = np.asarray(predict(rgb), dtype=np.float32)
                result.seconds[name] = time.perf_counter() - started
                if heatmap.shape != (height, width):
                    raise RowError(f"{name} returned a {heatmap.shape} map for a {(height, width)} image")
                if not np.isfinite(heatmap).all():
                    raise RowError(f"{name} returned a map with NaN or infinite values")
                heatmaps[name] = heatmap
                result.scores[name] = float(image_score(heatmap))
                if problem is None:
                    result.pixel[name] = pixel_metrics(heatmap, truth, threshold)
        except Exception as error:  # noqa: BLE001 - a failure on one row skips that row, with its reason
            if strict:
                raise RowError(f"row {row.id!r} (line {row.line}): {error}") from error
            skipped.append({"id": row.id, "line": row.line, "reason": str(error) or type(error).__name__})
            continue
        expected = (row.fields.get("width"), row.fields.get("height"))
        if expected != (str(width), str(height)):
            warnings.append({"id": row.id, "line": row.line,
                             "warning": f"manifest says {expected[0]}x{expected[1]}, image decodes to {width}x{height}"})
        if problem is not None and truth is not None:
            warnings.append({"id": row.id, "line": row.line, "warning": problem})
        if grid is not None and grid.wants_more():
            label = f"{row.id}  [{row.kind}]" + (f"  span score {result.scores['span']:.3f}" if "span" in result.scores else "")
            grid.add(label, rgb, truth, heatmaps)
        results.append(result)
    return results, skipped, warnings


def build_report(
    results: Sequence[ImageResult],
    *,
    manifest: Path,
    model: Mapping[str, Any],
    skipped: Sequence[Mapping[str, Any]],
    warnings: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any],
    threshold: float,
    n_rows: int,
    seconds: float,
) -> dict[str, Any]:
    methods = list(results[0].scores) if results else list(METHODS)
    return {
        "model": dict(model),
        "manifest": str(manifest),
        "n_rows": n_rows,
        "results": {method: method_report(results, method, threshold) for method in methods},
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


def format_summary(report: Mapping[str, Any], *, out: Path | None = None, grid: Path | None = None) -> str:
    """What the terminal shows after a run: the model, the table, what was left out, where the files went."""
    model = report["model"]
    lines = [f"model {model.get('name')} {model.get('version')} sha256 {str(model.get('sha256'))[:12]} "
             f"on {model.get('provider')}" + ("" if model.get("trained") else f"  ** {model.get('status')} **"),
             f"manifest {report['manifest']}: {report['n_rows']} rows, threshold {report['settings']['threshold']}, "
             f"{report['seconds']['total']:.1f} s", "", format_table(report)]
    if report["skipped"]:
        lines += ["", f"skipped {len(report['skipped'])} row(s):"]
        lines += [f"  line {entry['line']} {entry['id']}: {entry['reason']}" for entry in report["skipped"]]
    if report["warnings"]:
        lines += ["", f"{len(report['warnings'])} warning(s):"]
        lines += [f"  line {entry['line']} {entry['id']}: {entry['warning']}" for entry in report["warnings"]]
    lines += [""] + [f"{what}: {path}" for what, path in (("report", out), ("grid", grid)) if path is not None]
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------------------
# `span evaluate`: the shipped model through the service's own engine, decoder and score
# --------------------------------------------------------------------------------------

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


def run(
    manifest: str | Path,
    *,
    out: Path | None = None,
    threshold: float | None = None,
    limit: int | None = None,
    grid_path: Path | None = None,
    grid_rows: int = 8,
    strict: bool = False,
    progress: bool = True,
    settings: Any = None,
    layers: Sequence[str] = (),
) -> dict[str, Any]:
    """Evaluate the model in `settings.model_dir` and the baselines on a benchmark manifest; return the report.
    layers: forensic layers (service/layers/) scored as further methods on the same rows."""
    from service.analysis import image_score
    from service.decode import InputError, decode_image
    from service.engine import Engine, EngineError
    from service.manifest import ManifestError as ModelManifestError
    from service.settings import get_settings

    settings = settings or get_settings()
    threshold = settings.threshold if threshold is None else threshold
    manifest = Path(manifest)
    rows = read_benchmark_manifest(manifest)
    selected = rows[:limit] if limit else rows

    def load_image(path: Path) -> np.ndarray:
        try:
            return decode_image(path.read_bytes(), max_pixels=settings.max_pixels, min_side=settings.min_side).rgb
        except InputError as error:
            raise RowError(f"{error.message}: {path}") from error

    extra_methods = layer_methods(layers)
    started = time.perf_counter()
    try:
        engine = Engine.from_settings(settings)
    except (ModelManifestError, EngineError) as error:
        raise EvaluationError(f"cannot load the model from {settings.model_dir}: {error}") from error
    grid = Grid(rows=grid_rows) if grid_path is not None else None
    try:
        results, skipped, warnings = evaluate_rows(
            selected, load_image=load_image, image_score=image_score, threshold=threshold,
            methods={"span": engine.predict, "constant": constant_map, "ela": ela_map, **extra_methods},
            grid=grid, strict=strict, progress=progress,
        )
    finally:
        engine.close()
    if not results:
        raise RowError(f"no row of {manifest} could be evaluated ({len(skipped)} skipped); first reason: "
                       f"{skipped[0]['reason'] if skipped else 'none'}")
    report = build_report(
        results, manifest=manifest, model=_model_description(engine, settings), skipped=skipped,
        warnings=warnings, threshold=threshold, n_rows=len(selected), seconds=time.perf_counter() - started,
        settings={
            "threshold": threshold, "limit": limit, "strict": strict, "manifest_rows": len(rows),
            "ela": {"jpeg_quality": ELA_QUALITY, "box_radius": ELA_BOX_RADIUS, "normalisation": "per-image maximum"},
            "constant": {"level": CONSTANT_LEVEL},
            "layers": list(extra_methods),
            "engine": json.loads(settings.model_dump_json()),
        },
    )
    if out is not None:
        write_report(report, out)
    if grid is not None:
        grid.save(grid_path)
    return report


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
        "large_image_policy": report["settings"]["engine"].get("large_image_policy"),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "results": {method: {**pick(block), "by_dataset": {name: pick(v) for name, v in block["by_dataset"].items()}}
                    for method, block in report["results"].items()},
    }


def scores_key(report: Mapping[str, Any], key: str) -> str:
    """Where ``record_scores`` files a report: under ``key``, or ``key@int8`` for the int8 file, so
    the int8 model's scores sit beside the fp32 ones (together, the int8 gate's evidence)."""
    return key + INT8_SUFFIX if report["model"].get("precision") == "int8" else key


def record_scores(report: Mapping[str, Any], key: str) -> Path:
    """Write ``score_summary(report)`` into the manifest of the weights folder the report evaluated,
    under scores[key], refusing if the weights there changed since. manifest.json itself is not
    hashed, so this keeps the model files' digests valid."""
    path = Path(report["model"]["model_dir"]) / "manifest.json"
    data = json.loads(path.read_text())
    evaluated = report["model"]["sha256"]
    onnx_file = INT8_NAME if report["model"].get("precision") == "int8" else ONNX_NAME
    if data["files"].get(onnx_file, {}).get("sha256") != evaluated:
        raise EvaluationError(f"{path} describes other weights than the ones evaluated ({evaluated[:12]}…)")
    data.setdefault("scores", {})[scores_key(report, key)] = score_summary(report)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _model_description(engine: Any, settings: Any) -> dict[str, Any]:
    """The model as the service describes it (manifest, sha256, trained flag), plus where it ran."""
    return {**engine.manifest.describe(), "model_dir": str(settings.model_dir), "provider": engine.provider}
