"""spancore.scoring: the AUC, confusion counts and image score that training, serving and
evaluation share, checked against brute-force definitions."""
from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from spancore.scoring import Confusion, decision_mask, image_score, image_scores, roc_auc, tampered_fraction


def pairwise_auc(scores, truth):
    """The definition, by brute force: P(positive scores above negative), ties count one half."""
    positives = [s for s, t in zip(scores, truth) if t]
    negatives = [s for s, t in zip(scores, truth) if not t]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_auc_by_hand_with_a_tie():
    # positives 0.4 and 0.8, negatives 0.1 and 0.4: pairs won 1 + 0.5 + 1 + 1 of 4.
    assert roc_auc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 1, 0, 1])) == pytest.approx(0.875)


def test_auc_matches_the_pairwise_count_with_many_ties():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(2, 30))
        scores = rng.integers(0, 4, n) / 3.0  # four levels: ties everywhere
        truth = rng.random(n) < 0.4
        if truth.all() or not truth.any():
            continue
        assert roc_auc(scores, truth) == pytest.approx(pairwise_auc(scores, truth), abs=1e-12)


def test_auc_edges():
    assert roc_auc(np.array([0.2, 0.9]), np.array([0, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.2]), np.array([0, 1])) == 0.0
    assert roc_auc(np.full(10, 0.5), np.arange(10) < 3) == 0.5
    assert roc_auc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    assert roc_auc(np.array([0.1, 0.2]), np.array([0, 0])) is None


def test_confusion_metrics_on_known_counts():
    # tp=3 fp=1 fn=2 tn=4
    predicted = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    truth = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    confusion = Confusion.of(predicted, truth)
    assert (confusion.tp, confusion.fp, confusion.fn, confusion.tn) == (3, 1, 2, 4)
    assert confusion.f1() == pytest.approx(6 / 9)
    assert confusion.iou() == pytest.approx(3 / 6)
    assert confusion.mcc() == pytest.approx((3 * 4 - 1 * 2) / math.sqrt(4 * 5 * 5 * 6))
    assert confusion.balanced_accuracy() == pytest.approx((3 / 5 + 4 / 5) / 2)
    # A zero marginal: MCC 0 by convention, never NaN.
    assert Confusion.of(np.ones(4, bool), np.array([1, 0, 0, 0], bool)).mcc() == 0.0


def test_image_score_is_the_mean_of_the_top_percent():
    heatmap = np.zeros((100, 100), np.float32)
    assert image_score(heatmap) == 0
    heatmap[0, 0] = 1.0  # one hot pixel barely moves it
    assert image_score(heatmap) == pytest.approx(0.01)
    heatmap[50:60, 50:60] = 0.9  # a region of 1 % (100 pixels) sets it
    assert image_score(heatmap) == pytest.approx((99 * 0.9 + 1.0) / 100)
    assert image_score(np.full((3, 3), 0.4, np.float32)) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        image_score(np.zeros((0, 0), np.float32))


def test_tampered_fraction_counts_pixels_at_or_above_the_threshold():
    heatmap = np.array([[0.1, 0.5], [0.7, 0.49]], np.float32)
    assert tampered_fraction(heatmap, 0.5) == 0.5
    assert tampered_fraction(heatmap, 0.0) == 1.0


def test_the_peak_relative_cut_keeps_the_strongest_region_and_never_marks_more_than_the_threshold():
    rng = np.random.default_rng(3)
    heatmap = rng.random((40, 40)).astype(np.float32) * 0.3  # a weak map everywhere...
    heatmap[5:10, 5:10] = 0.9                                 # ...and one strong region
    assert np.array_equal(decision_mask(heatmap, 0.12), heatmap >= 0.12)           # no cut: the threshold
    assert np.array_equal(decision_mask(heatmap, 0.12, 0.0), heatmap >= 0.12)
    cut = decision_mask(heatmap, 0.12, 0.5)                   # 0.5 x 0.9: only the strong region
    assert np.array_equal(cut, heatmap >= 0.45) and cut.sum() == 25
    for relative in np.linspace(0, 1, 11):                    # a subset of the threshold's marks, always
        assert not (decision_mask(heatmap, 0.12, relative) & ~(heatmap >= 0.12)).any()
    weak = heatmap * 0.1                                      # a map whose peak is below the threshold
    assert not decision_mask(weak, 0.12, 0.5).any()           # the threshold still rules: nothing marked
    assert tampered_fraction(heatmap, 0.12, 0.5) == pytest.approx(25 / 1600)
    assert decision_mask(np.zeros((0, 0), np.float32), 0.1, 0.5).shape == (0, 0)


def test_image_scores_of_a_stack_equal_each_maps_own_score():
    rng = np.random.default_rng(5)
    stack = rng.random((4, 37, 23)).astype(np.float32)
    np.testing.assert_allclose(image_scores(stack), [image_score(m) for m in stack], rtol=1e-6)
