from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from bench.self_correlation_probe import far_matches, pixel_descriptors  # noqa: E402


def test_a_grid_aligned_copy_matches_its_source_alone_and_flat_content_matches_everywhere():
    rng = np.random.default_rng(0)
    rgb = np.full((96, 128, 3), 120, np.uint8)
    rgb[:, :, :] += rng.integers(0, 3, (96, 128, 1), dtype=np.uint8)  # near-flat background
    patch = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    rgb[16:40, 16:40] = patch
    rgb[48:72, 80:104] = patch                                # the copy, 32 and 64 px away
    first, second = far_matches(*pixel_descriptors(rgb), min_distance=3)
    copy_cell, source_cell = (7, 11), (3, 3)                  # cells (row, col) inside each copy
    assert first[copy_cell] > 0.99 and first[source_cell] > 0.99
    assert first[copy_cell] - second[copy_cell] > 0.5         # nothing else looks like it
    background = (1, 14)
    assert first[background] - second[background] < 0.3      # noise matches noise anywhere, about equally
