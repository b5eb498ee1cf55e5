from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from bench.operating_rules import families  # noqa: E402


def test_a_map_whose_scale_drifts_is_cut_better_relative_to_its_peak():
    truth = np.zeros((3, 8, 8), bool)
    truth[0, :4] = truth[1, :4] = True             # two forged photos, one pristine
    heat = np.full((3, 8, 8), 0.05)
    heat[0, :4] = 0.9                               # a confident map
    heat[1, :4], heat[1, 4:] = 0.3, 0.1             # the same shape at a third of the scale
    heat[2, :2] = 0.2                               # a pristine photo with a weak blob
    best = families(heat, truth)
    assert best["relative"]["f1"] == pytest.approx(1.0)      # r between 1/3 and 1 separates both
    assert best["global"]["f1"] == pytest.approx(1.0)        # so does 0.15..0.3: t = 0.15
    assert best["global"]["t"] <= 0.3
    heat[1, 4:] = 0.35                              # now the weak photo's background beats the strong one's edit
    heat[1, :4] = 0.8
    heat[0, :4], heat[0, 4:] = 0.3, 0.04
    best = families(heat, truth)
    assert best["relative"]["f1"] == pytest.approx(1.0)
    assert best["global"]["f1"] < 1.0                # no single threshold fits both photos
    assert best["relative"]["pristine_any"] == 1.0   # a relative cut always marks something
