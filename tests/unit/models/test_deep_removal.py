"""Synthesis kind "deep-inpaint": off by default, on through kind_weights, and it edits only its mask."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from models import synthesis as syn  # noqa: E402
from models.deep_removal import deep_inpaint_removal  # noqa: E402

SIZE = 128


@pytest.fixture(scope="module")
def val_photos():
    return syn.list_photos("val", min_side=SIZE)


def test_deep_inpaint_is_off_by_default():
    assert syn.DEFAULT_KIND_WEIGHTS.get("deep-inpaint", 0) == 0
    assert "deep-inpaint" not in syn.ForgeryDataset("val", size=SIZE).kinds


def test_deep_inpaint_replaces_exactly_its_region(val_photos):
    for i in range(4):
        rng = syn.sample_rng(31, i)
        host, seg = syn.random_crop(rng, val_photos[i], 160)
        image, mask = deep_inpaint_removal(rng, host, seg)
        assert image.shape == host.shape and image.dtype == np.uint8
        assert mask.shape == host.shape[:2] and set(np.unique(mask)) <= {0.0, 1.0}
        assert 0.005 < mask.mean() < 0.3
        changed = np.any(image != host, axis=2)
        assert not changed[mask == 0].any()
        assert changed[mask == 1].mean() > 0.5


def test_kind_weights_turn_it_on_deterministically():
    ds = syn.ForgeryDataset("val", size=SIZE, seed=4, kind_weights={"deep-inpaint": 1.0})
    a, b = ds[0], ds[0]
    assert syn.KINDS[a[2]] == "deep-inpaint"
    assert syn.torch.equal(a[0], b[0]) and syn.torch.equal(a[1], b[1])
    f = ds.forgery(1)
    assert f.kind == "deep-inpaint" and f.mask.sum() > 0
