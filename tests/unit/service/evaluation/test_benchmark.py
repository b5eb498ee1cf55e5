"""service/evaluation/benchmark.py: the benchmark CSV's checks and masks as displayed."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from service.evaluation.baselines import ela_map
from service.evaluation.benchmark import BenchmarkError, mask_problem, read_benchmark
from service.evaluation.run import evaluate_rows

from evaluation_data import SHARED, _row, _write_manifest


def test_degenerate_masks_are_named():
    assert mask_problem(None).startswith("pristine")
    assert "all black" in mask_problem(np.zeros((3, 3), bool))
    assert "all white" in mask_problem(np.ones((3, 3), bool))
    assert mask_problem(np.eye(3, dtype=bool)) is None


def test_manifest_errors_are_clear(tmp_path):
    with pytest.raises(BenchmarkError, match="not found"):
        read_benchmark(tmp_path / "absent.csv")
    bad = _write_manifest(tmp_path / "cols.csv", [_row("a", "a.png")], header=["id", "image", "dataset"])
    with pytest.raises(BenchmarkError, match=r"missing column\(s\) mask, kind, width"):
        read_benchmark(bad)
    with pytest.raises(BenchmarkError, match="no rows"):
        read_benchmark(_write_manifest(tmp_path / "empty.csv", []))
    with pytest.raises(BenchmarkError, match="duplicate id 'a'"):
        read_benchmark(_write_manifest(tmp_path / "dup.csv", [_row("a", "a.png"), _row("a", "b.png")]))


def test_masks_follow_the_photo_as_displayed_after_exif_orientation(tmp_path):
    """landscape_6.jpg is stored 450x600 with EXIF orientation 6: shown (and analysed) as 600x450."""
    from service.decode import decode_image

    photo = SHARED / "photos" / "exif-samples" / "jpg" / "orientation" / "landscape_6.jpg"
    (tmp_path / "photo.jpg").write_bytes(photo.read_bytes())
    for name, size in (("displayed.png", (600, 450)), ("stored.png", (450, 600))):
        mask = Image.new("L", size)
        mask.paste(255, (10, 10, 100, 100))
        mask.save(tmp_path / name)
    manifest = _write_manifest(tmp_path / "manifest.csv", [
        _row("displayed", "photo.jpg", "displayed.png", size=(600, 450)),
        _row("stored", "photo.jpg", "stored.png", size=(600, 450)),
    ])
    results, skipped, warnings = evaluate_rows(
        read_benchmark(manifest), load_image=lambda path: decode_image(path.read_bytes(), max_pixels=10**8).rgb,
        methods={"ela": ela_map}, image_score=lambda m: float(m.max()), threshold=0.5, progress=False)
    assert [result.row.id for result in results] == ["displayed"] and warnings == []
    assert skipped[0]["id"] == "stored"
    assert "mask size 450x600 differs from image size 600x450 (image after EXIF orientation)" in skipped[0]["reason"]
