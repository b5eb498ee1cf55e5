"""`span forge` through the real command (a subprocess running the installed `span` entry point),
on real photos from ../shared/data and the shipped generator in weights/inpaint/."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SPAN = Path(sys.executable).with_name("span")
BSDS_VAL = REPO.parent / "shared" / "data" / "photos" / "bsds500" / "val"

pytestmark = pytest.mark.skipif(not BSDS_VAL.is_dir(), reason="needs ../shared/data")


def span(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SPAN), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def photo() -> Path:
    return sorted(BSDS_VAL.glob("*.jpg"))[0]


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _refused(result: subprocess.CompletedProcess, out: Path, fragment: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("span forge: ") and fragment in lines[0], result.stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no staging folder left behind


def test_forge_a_rectangle_changes_exactly_the_hole(tmp_path, photo):
    out = tmp_path / "forged"
    result = span("forge", str(photo), "--mask", "rect:60,80,90,70", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["forge.json", "forged.png", "mask.png"]
    original, forged = _rgb(photo), _rgb(out / "forged.png")
    truth = np.asarray(Image.open(out / "mask.png")) > 127
    assert forged.shape == original.shape and truth.shape == original.shape[:2]
    assert truth.sum() == 90 * 70 and truth[80:150, 60:150].all()
    changed = np.any(forged != original, axis=2)
    assert not changed[~truth].any()          # the truth is exact: nothing outside it moved
    assert changed[truth].mean() > 0.5         # and the hole was really refilled
    record = json.loads((out / "forge.json").read_text())
    manifest = json.loads((REPO / "weights" / "inpaint" / "manifest.json").read_text())
    assert record["model_sha256"] == manifest["files"]["deepfill.onnx"]["sha256"]
    assert record["hole_pixels"] == 90 * 70 and record["mask_source"] == "rect:60,80,90,70"


def test_forge_a_mask_file(tmp_path, photo):
    h, w = _rgb(photo).shape[:2]
    mask = np.zeros((h, w), np.uint8)
    mask[20:60, 30:50] = 255
    mask[200:230, 100:190] = 255
    Image.fromarray(mask).save(tmp_path / "hole.png")
    out = tmp_path / "o"
    result = span("forge", str(photo), "--mask", str(tmp_path / "hole.png"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.asarray(Image.open(out / "mask.png")) > 127, mask > 127)


def test_forge_random_over_a_folder_writes_a_benchmark_span_evaluate_reads(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(BSDS_VAL.glob("*.jpg"))[:2]:
        shutil.copy(p, photos / p.name)
    (photos / "notes.txt").write_text("not a photo: ignored")
    out = tmp_path / "bench"
    result = span("forge", str(photos), "--random", "2", "--out", str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert list(rows[0]) == ["id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license"]
    for row in rows:
        truth = np.asarray(Image.open(out / row["mask"])) > 127
        assert truth.shape == (int(row["height"]), int(row["width"]))
        assert float(row["tampered_fraction"]) == pytest.approx(truth.mean(), abs=1e-4)
        assert 0.01 <= truth.mean() <= 0.4
    report = tmp_path / "report.json"
    evaluated = span("evaluate", str(out / "manifest.csv"), "--limit", "2", "--out", str(report), "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    scored = json.loads(report.read_text())
    assert scored["results"]["span"]["n_pixel_images"] == 2


def test_forge_bad_inputs_get_one_line_and_nothing_written(tmp_path, photo):
    out = tmp_path / "o"
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    _refused(span("forge", str(tmp_path / "broken.jpg"), "--mask", "random", "--out", str(out)), out, "broken.jpg")
    _refused(span("forge", str(tmp_path / "missing.jpg"), "--mask", "random", "--out", str(out)), out, "missing.jpg")
    Image.fromarray(np.full((10, 12), 255, np.uint8)).save(tmp_path / "small.png")
    _refused(span("forge", str(photo), "--mask", str(tmp_path / "small.png"), "--out", str(out)), out, "12x10")
    h, w = _rgb(photo).shape[:2]
    Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / "empty.png")
    _refused(span("forge", str(photo), "--mask", str(tmp_path / "empty.png"), "--out", str(out)), out, "empty")
    for spec in ("rect:1,2,3", "star:1,2,3,4", "rect:5000,5000,10,10"):
        _refused(span("forge", str(photo), "--mask", spec, "--out", str(out)), out, "")
    (tmp_path / "none").mkdir()
    _refused(span("forge", str(tmp_path / "none"), "--random", "1", "--out", str(out)), out, "no photos")
    _refused(span("forge", str(tmp_path), "--random", "1", "--out", str(out)), out, "broken.jpg")  # aborts the whole folder


def test_forge_refuses_a_non_empty_out(tmp_path, photo):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = span("forge", str(photo), "--mask", "random", "--out", str(out))
    assert result.returncode != 0 and "not empty" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
