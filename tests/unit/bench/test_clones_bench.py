"""bench/clones.py: its translated copies are what it says, and its table counts what it found."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from bench.clones import saved, summarise_pairs, translated_copy  # noqa: E402
from spancore.clones import find_clones  # noqa: E402


def test_a_translated_copy_changes_only_its_region_and_is_found():
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:240, 0:320]
    photo = np.clip((100 + 0.3 * x + 0.2 * y)[..., None] + rng.normal(0, 6, (240, 320, 3)), 0, 255).astype(np.uint8)
    for seed in (0, 5):  # copies of 2,200 and 4,000 px, moved far enough not to cover their own source
        forgery, truth = translated_copy(np.random.default_rng(seed), photo, None)
        assert truth.any() and forgery.shape == photo.shape
        changed = np.any(forgery != photo, axis=2)
        assert changed[truth].mean() > 0.8  # the copy replaced what was there...
        grown = np.zeros_like(truth)
        ys, xs = np.nonzero(truth)
        grown[max(0, ys.min() - 8):ys.max() + 9, max(0, xs.min() - 8):xs.max() + 9] = True
        assert not changed[~grown].any()  # ...and nothing outside it (a feathered edge at most)
        result = find_clones(saved(forgery, None)[1])  # PNG, decoded again: lossless
        assert result.found and result.mask[truth].mean() > 0.5


def test_the_table_counts_per_group_and_the_aucs_use_the_confidence():
    rows = []
    for pair, (found, fmt) in enumerate([(True, None), (False, None), (False, 80), (True, 95)]):
        common = {"pair": pair, "frame": "bsds", "edit": "translation", "quality": fmt, "truth_fraction": 0.01}
        rows.append({**common, "label": 1, "found": found, "confidence": 0.99 if found else 0.0, "f1": 0.5, "ms": 1.0})
        rows.append({**common, "label": 0, "found": False, "confidence": 0.0, "ms": 1.0})
    summary = summarise_pairs(rows)
    assert summary["table"]["forged translation"] == {"n": 4, "found": 0.5}
    assert summary["table"]["forged translation png"] == {"n": 2, "found": 0.5}
    assert summary["table"]["forged translation jpeg>=90"] == {"n": 1, "found": 1.0}
    assert summary["originals_found"] == 0.0
    assert summary["image_auc_translation"] == pytest.approx(0.5 + 0.5 * 0.5)  # half found, the rest tied
