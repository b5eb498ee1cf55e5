"""service/evaluation/metrics.py: pixel and image scores by hand and against sweeps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from service.evaluation.metrics import PIXEL_KEYS, image_metrics, pixel_metrics
from spancore.scoring import Confusion, roc_auc


def test_pixel_metrics_by_hand_and_the_inverse_convention():
    heatmap = np.array([[0.9, 0.6, 0.4], [0.2, 0.7, 0.1]], np.float32)
    truth = np.array([[1, 1, 0], [0, 0, 0]], bool)
    values = pixel_metrics(heatmap, truth, 0.5)
    # At 0.5: predicted {0.9, 0.6, 0.7} -> tp 2, fp 1, fn 0, tn 3.
    assert values["pixel_f1_fixed"] == pytest.approx(4 / 5)
    assert values["pixel_iou"] == pytest.approx(2 / 3)
    assert values["pixel_mcc"] == pytest.approx((2 * 3 - 0) / math.sqrt(3 * 2 * 4 * 3))
    # Positives 0.9, 0.6 against 0.4, 0.2, 0.7, 0.1: 0.6 loses to 0.7 only -> 7 of 8.
    assert values["pixel_auc"] == pytest.approx(7 / 8)
    # Best threshold 0.9 would give F1 2/3; threshold 0.6 takes 0.9, 0.7, 0.6 -> 4/5; so 4/5.
    assert values["pixel_f1_best"] == pytest.approx(4 / 5)
    # The better-of convention never loses, and keeps the as-is values when the map is right-way round.
    for key in PIXEL_KEYS:
        assert values[f"{key}_inv"] >= values[key] - 1e-12

    # With a peak-relative cut of 0.75 (0.75 x 0.9 = 0.675) the 0.6 drops out: tp 1, fp 1, fn 1.
    cut = pixel_metrics(heatmap, truth, 0.5, relative_cut=0.75)
    assert cut["pixel_f1_fixed"] == pytest.approx(1 / 2) and cut["pixel_iou"] == pytest.approx(1 / 3)
    assert cut["pixel_auc"] == values["pixel_auc"] and cut["pixel_f1_best"] == values["pixel_f1_best"]

    flipped = pixel_metrics(1.0 - heatmap, truth, 0.5)
    assert flipped["pixel_auc"] == pytest.approx(1 / 8)
    assert flipped["pixel_auc_inv"] == pytest.approx(7 / 8)
    assert flipped["pixel_f1_fixed"] == pytest.approx(0.0)  # predicted {0.6, 0.8, 0.9 of 1-x} = the negatives
    assert flipped["pixel_f1_fixed_inv"] == pytest.approx(4 / 5)
    assert flipped["pixel_f1_best_inv"] == pytest.approx(4 / 5)


def test_best_f1_matches_a_sweep_over_every_threshold():
    rng = np.random.default_rng(3)
    for _ in range(100):
        scores = (rng.integers(0, 6, 40) / 5.0).astype(np.float32)
        truth = rng.random(40) < 0.3
        if truth.all() or not truth.any():
            continue
        values = pixel_metrics(scores, truth, 0.5)
        sweep = max(Confusion.of(scores >= level, truth).f1() for level in np.unique(scores))
        sweep_inverse = max(Confusion.of(scores <= level, truth).f1() for level in np.unique(scores))
        assert values["pixel_f1_best"] == pytest.approx(sweep)
        assert values["pixel_f1_best_inv"] == pytest.approx(max(sweep, sweep_inverse))


def test_pixel_metrics_refuse_a_one_class_mask():
    with pytest.raises(ValueError, match="both"):
        pixel_metrics(np.random.rand(4, 4), np.zeros((4, 4), bool), 0.5)


def test_image_metrics_one_class_is_null_with_a_reason():
    values, notes = image_metrics([0.2, 0.9, 0.4], [True, True, True], 0.5)
    assert values == {"image_auc": None, "image_bacc": None}
    assert "only one class" in notes["image_auc"] and "3 manipulated, 0 pristine" in notes["image_auc"]
    values, notes = image_metrics([0.2, 0.9, 0.4, 0.7], [False, True, True, False], 0.5)
    assert values["image_auc"] == pytest.approx(roc_auc(np.array([0.2, 0.9, 0.4, 0.7]), np.array([0, 1, 1, 0])))
    assert values["image_bacc"] == pytest.approx(0.5 * (1 / 2 + 1 / 2))
    assert notes == {}
