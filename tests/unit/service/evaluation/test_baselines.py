"""service/evaluation/baselines.py: the constant floor and ELA on a real splice."""
from __future__ import annotations

from evaluation_data import _splice


import numpy as np
import pytest

from service.evaluation.baselines import constant_map, ela_map
from service.evaluation.metrics import pixel_metrics
from spancore.scoring import roc_auc


def test_constant_map_is_the_floor():
    truth = np.zeros((8, 10), bool)
    truth[2:4, 3:8] = True  # 10 of 80 pixels
    values = pixel_metrics(constant_map(np.zeros((8, 10, 3), np.uint8)), truth, 0.5)
    assert values["pixel_auc"] == 0.5 and values["pixel_auc_inv"] == 0.5
    # 0.5 reaches the threshold: every pixel is called manipulated.
    assert values["pixel_f1_fixed"] == pytest.approx(2 * 10 / (2 * 10 + 70))
    assert values["pixel_iou"] == pytest.approx(10 / 80)
    assert values["pixel_mcc"] == 0.0


def test_ela_map_is_normalised_and_finds_a_pasted_region():
    aucs = []
    for host, donor in [(2, 3), (4, 5), (6, 7)]:
        image, mask = _splice(host, donor)
        heatmap = ela_map(image)
        assert heatmap.shape == mask.shape and heatmap.dtype == np.float32
        assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
        aucs.append(roc_auc(heatmap, mask))
    assert np.mean(aucs) > 0.8, aucs
    assert ela_map(np.zeros((16, 16, 3), np.uint8)).max() == 0.0  # nothing changes: zeros, not NaN
