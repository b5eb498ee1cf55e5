"""Scoring maths shared by training (validation), serving (the image score) and evaluation:
pure numpy, exact; tests compare them with brute-force counts.

ROC-AUC is implemented here (exact, rank-based, ties count one half) rather than taken
from scikit-learn: it is a dozen lines of numpy, and scikit-learn plus scipy would add on
the order of 100 MB to a runtime that is meant to stay lean.

Image score: the mean of the top 1 % of the map's pixel probabilities (at least one
pixel). A single hot pixel cannot raise it much, a manipulated region covering 1 % of
the photo or more lifts it to that region's probability, and the map's size does not
matter because it is a fraction. It is a score in [0, 1], not a calibrated probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCORE_TOP_FRACTION = 0.01


def image_score(heatmap: np.ndarray) -> float:
    """Mean of the top SCORE_TOP_FRACTION of the map's values: how likely the photo was edited."""
    values = np.asarray(heatmap, dtype=np.float32).ravel()
    if values.size == 0:
        raise ValueError("empty heatmap")
    k = max(1, math.ceil(values.size * SCORE_TOP_FRACTION))
    top = np.partition(values, values.size - k)[values.size - k :]
    return float(np.clip(top.mean(dtype=np.float64), 0.0, 1.0))


def image_scores(heatmaps: np.ndarray) -> np.ndarray:
    """`image_score` of each map in a [N, H, W] stack, computed together (training's validation)."""
    flat = np.asarray(heatmaps).reshape(len(heatmaps), -1)
    top = max(1, math.ceil(flat.shape[1] * SCORE_TOP_FRACTION))
    return np.sort(flat, axis=1)[:, -top:].mean(1)


def decision_mask(heatmap: np.ndarray, threshold: float, relative_cut: float = 0.0) -> np.ndarray:
    """The pixels the service calls manipulated: at or above the threshold and at or above
    `relative_cut` times the map's own peak. The cut keeps a map's strongest region and drops
    the weaker marks around it, so it only ever marks fewer pixels than the threshold alone
    (0 turns it off). Both numbers are chosen on synthetic validation (models.calibrate)."""
    values = np.asarray(heatmap)
    level = threshold if relative_cut <= 0 or values.size == 0 else max(threshold, relative_cut * float(values.max()))
    return values >= float(level)  # a Python float is compared in the map's own dtype (NumPy 2)


def tampered_fraction(heatmap: np.ndarray, threshold: float, relative_cut: float = 0.0) -> float:
    """Fraction of pixels the decision marks (decision_mask)."""
    return float(np.count_nonzero(decision_mask(heatmap, threshold, relative_cut)) / np.asarray(heatmap).size)


def grouped_counts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives at each distinct score, distinct scores in ascending order."""
    values = np.asarray(scores).ravel()
    order = np.argsort(values)  # one sort per map; ties are grouped below, so stability is not needed
    ordered = values[order]
    last_of_group = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    positives = np.diff(np.cumsum(np.asarray(truth, dtype=bool).ravel()[order])[last_of_group], prepend=0)
    totals = np.diff(last_of_group + 1, prepend=0)
    return positives.astype(np.float64), (totals - positives).astype(np.float64)


def auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return None
    # Mann-Whitney: each positive beats every negative scored lower and half of those scored the same.
    negatives_below = np.cumsum(negatives) - negatives
    return float(np.sum(positives * (negatives_below + 0.5 * negatives)) / (n_pos * n_neg))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Exact ROC-AUC (probability that a positive outscores a negative, ties count 1/2); None with one class."""
    return auc_from_counts(*grouped_counts(scores, truth))


def best_f1(tp: np.ndarray, fp: np.ndarray, n_pos: float) -> float:
    """Best F1 over thresholds, given true and false positives at each of them."""
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P); predicting nothing gives 0.
    return float(np.max(2.0 * tp / np.maximum(tp + fp + n_pos, 1.0), initial=0.0))


def binarize(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """The service's decision: a pixel (or image) is called manipulated when its score reaches the threshold."""
    return np.asarray(heatmap) >= threshold


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
