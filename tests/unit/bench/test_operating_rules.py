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
    best = families([(heat, truth)])
    assert best["relative"]["f1"] == pytest.approx(1.0)      # r between 1/3 and 1 separates both
    assert best["global"]["f1"] == pytest.approx(1.0)        # so does 0.15..0.3: t = 0.15
    assert best["global"]["t"] <= 0.3
    heat[1, 4:] = 0.35                              # now the weak photo's background beats the strong one's edit
    heat[1, :4] = 0.8
    heat[0, :4], heat[0, 4:] = 0.3, 0.04
    best = families([(heat, truth)])
    assert best["relative"]["f1"] == pytest.approx(1.0)
    assert best["global"]["f1"] < 1.0                # no single threshold fits both photos
    assert best["relative"]["sets"][0]["pristine_any"] == 1.0   # a relative cut always marks something


def test_a_cap_on_the_marked_fraction_cuts_a_broad_false_alarm_that_no_threshold_can():
    """Photo 0: a 4-pixel edit at 0.6 inside a background at 0.5 (a global cut at 0.55 works);
    photo 1: a 4-pixel edit at 0.3 over a background at 0.1, with a broad 0.4 false alarm
    over half the photo. A threshold that finds photo 1's edit marks half of photo 1;
    keeping at most 5 % of each photo (the top 4 of 64 pixels, 6 %, by interpolation) finds both."""
    truth = np.zeros((2, 8, 8), bool)
    truth[0, 0, :4] = truth[1, 7, :4] = True
    heat = np.full((2, 8, 8), 0.5)
    heat[0][truth[0]] = 0.6
    heat[1] = 0.1
    heat[1, :4] = 0.4
    heat[1][truth[1]] = 0.3
    best = families([(heat, truth), (heat, truth)])
    assert best["global"]["f1"] < 0.75
    assert best["capped"]["f1"] < 0.75  # photo 1's false alarm outranks its edit: no cut helps
    heat[1][truth[1]] = 0.45              # now the edit tops the false alarm but the background
    best = families([(heat, truth), (heat, truth)])
    assert best["capped"]["f1"] == pytest.approx(1.0)
    assert best["capped"]["f"] < 0.1
    assert best["global"]["f1"] < 0.8     # 0.45 marks photo 1's half-photo alarm or misses photo 0's
