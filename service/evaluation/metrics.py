"""Evaluation scores of one method: pixel metrics per image, image metrics over rows, and the
summary blocks of a report. The maths underneath (AUC, F1, confusion counts) is spancore.scoring's,
shared with training. Conventions in docs/evaluation.md; an undefined number is None with a reason."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.evaluation.benchmark import BenchmarkRow
from spancore.scoring import Confusion, auc_from_counts, best_f1, binarize, decision_mask, grouped_counts, roc_auc

PIXEL_KEYS = ("pixel_auc", "pixel_f1_fixed", "pixel_f1_best", "pixel_iou", "pixel_mcc")
INVERSE_KEYS = tuple(f"{key}_inv" for key in PIXEL_KEYS)


def pixel_metrics(heatmap: np.ndarray, truth: np.ndarray, threshold: float,
                  relative_cut: float = 0.0) -> dict[str, float]:
    """Pixel metrics of one image, as is and with the better-of-map-or-inverse convention (`_inv`).
    The fixed-threshold ones (F1, IoU, MCC) mark what the service marks: decision_mask at the
    threshold and the peak-relative cut.

    `truth` must hold both classes (callers check: see `mask_problem`).
    The `_inv` value of each metric is, for this image, the larger of the metric on the map
    and on `1 - map`: per metric, as the papers' evaluation code does.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    truth = np.asarray(truth, dtype=bool)
    positives, negatives = grouped_counts(heatmap, truth)
    n_pos = float(positives.sum())
    auc = auc_from_counts(positives, negatives)
    if auc is None:
        raise ValueError("pixel metrics need a mask with both manipulated and pristine pixels")
    # Thresholds at every distinct score: calling "score >= v" manipulated keeps the groups
    # from v upwards (suffix sums); for the inverse map, from v downwards (prefix sums).
    tp_up, fp_up = np.cumsum(positives[::-1]), np.cumsum(negatives[::-1])
    tp_down, fp_down = np.cumsum(positives), np.cumsum(negatives)
    as_is = Confusion.of(decision_mask(heatmap, threshold, relative_cut), truth)
    inverse = Confusion.of(decision_mask(1.0 - heatmap, threshold, relative_cut), truth)
    values = {
        "pixel_auc": auc,
        "pixel_f1_fixed": as_is.f1(),
        "pixel_f1_best": best_f1(tp_up, fp_up, n_pos),
        "pixel_iou": as_is.iou(),
        "pixel_mcc": as_is.mcc(),
    }
    inverse_values = {
        "pixel_auc": 1.0 - auc,
        "pixel_f1_fixed": inverse.f1(),
        "pixel_f1_best": best_f1(tp_down, fp_down, n_pos),
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


def summarize(results: Sequence[ImageResult], method: str, image_threshold: float) -> dict[str, Any]:
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
        [result.scores[method] for result in results], [result.label for result in results], image_threshold
    )
    summary.update(image_values)
    notes.update(image_notes)
    summary["notes"] = notes
    return summary


def method_report(results: Sequence[ImageResult], method: str, image_threshold: float) -> dict[str, Any]:
    report = summarize(results, method, image_threshold)
    datasets = sorted({result.row.dataset for result in results})
    report["by_dataset"] = {
        name: summarize([result for result in results if result.row.dataset == name], method, image_threshold)
        for name in datasets
    }
    # Which kind of forgery a method sees: splice, copy-move... per dataset ("casia2/copy-move").
    kinds = sorted({(result.row.dataset, result.row.kind) for result in results})
    report["by_kind"] = {
        f"{dataset}/{kind}": summarize([r for r in results if (r.row.dataset, r.row.kind) == (dataset, kind)],
                                       method, image_threshold)
        for dataset, kind in kinds
    }
    return report
