"""`span evaluate`: exact metrics, baselines, manifest checks, and the command end to end on real photos."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.evaluate import (
    INVERSE_KEYS,
    PIXEL_KEYS,
    Confusion,
    BenchmarkManifestError,
    RowError,
    build_report,
    constant_map,
    ela_map,
    evaluate_rows,
    format_table,
    image_metrics,
    mask_problem,
    pixel_metrics,
    read_benchmark_manifest,
    roc_auc,
    write_report,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
BSDS_VAL = SHARED / "photos" / "bsds500" / "val"
DEV_MANIFEST = SHARED / "benchmarks" / "dev" / "manifest.csv"
SPAN = ROOT / ".venv" / "bin" / "span"
REQUIRED = ("pixel_auc", "pixel_f1_fixed", "pixel_f1_best", "pixel_iou", "pixel_mcc", "image_auc", "image_bacc", "n_images")
HEADER = ["id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license"]


# ---------------------------------------------------------------- metrics on small arrays

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


def test_constant_map_is_the_floor():
    truth = np.zeros((8, 10), bool)
    truth[2:4, 3:8] = True  # 10 of 80 pixels
    values = pixel_metrics(constant_map(np.zeros((8, 10, 3), np.uint8)), truth, 0.5)
    assert values["pixel_auc"] == 0.5 and values["pixel_auc_inv"] == 0.5
    # 0.5 reaches the threshold: every pixel is called manipulated.
    assert values["pixel_f1_fixed"] == pytest.approx(2 * 10 / (2 * 10 + 70))
    assert values["pixel_iou"] == pytest.approx(10 / 80)
    assert values["pixel_mcc"] == 0.0


def test_pixel_metrics_refuse_a_one_class_mask():
    with pytest.raises(ValueError, match="both"):
        pixel_metrics(np.random.rand(4, 4), np.zeros((4, 4), bool), 0.5)


def test_degenerate_masks_are_named():
    assert mask_problem(None).startswith("pristine")
    assert "all black" in mask_problem(np.zeros((3, 3), bool))
    assert "all white" in mask_problem(np.ones((3, 3), bool))
    assert mask_problem(np.eye(3, dtype=bool)) is None


def test_image_metrics_one_class_is_null_with_a_reason():
    values, notes = image_metrics([0.2, 0.9, 0.4], [True, True, True], 0.5)
    assert values == {"image_auc": None, "image_bacc": None}
    assert "only one class" in notes["image_auc"] and "3 manipulated, 0 pristine" in notes["image_auc"]
    values, notes = image_metrics([0.2, 0.9, 0.4, 0.7], [False, True, True, False], 0.5)
    assert values["image_auc"] == pytest.approx(pairwise_auc([0.2, 0.9, 0.4, 0.7], [0, 1, 1, 0]))
    assert values["image_bacc"] == pytest.approx(0.5 * (1 / 2 + 1 / 2))
    assert notes == {}


# ---------------------------------------------------------------- ELA on a real splice

def _photo(index: int) -> np.ndarray:
    files = sorted(BSDS_VAL.glob("*.jpg"))
    return np.asarray(Image.open(files[index]).convert("RGB"))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def _splice(host_index: int, donor_index: int) -> tuple[np.ndarray, np.ndarray]:
    """A real photo saved at JPEG 90 with a rectangle of another photo pasted in (the classic ELA case)."""
    host, donor = _photo(host_index), _photo(donor_index)
    height, width = min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1])
    image = _jpeg(host[:height, :width].copy(), 90)
    mask = np.zeros((height, width), bool)
    mask[60:180, 100:260] = True
    image[mask] = donor[:height, :width][mask]
    return image, mask


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


# ---------------------------------------------------------------- manifests

def _write_manifest(path: Path, rows: list[dict], header=HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(row_id, image, mask="", dataset="synth", kind="splice", size=(0, 0)):
    return {"id": row_id, "image": image, "mask": mask, "dataset": dataset, "kind": kind,
            "width": size[0], "height": size[1], "tampered_fraction": 0, "license": "test"}


def test_manifest_errors_are_clear(tmp_path):
    with pytest.raises(BenchmarkManifestError, match="not found"):
        read_benchmark_manifest(tmp_path / "absent.csv")
    bad = _write_manifest(tmp_path / "cols.csv", [_row("a", "a.png")], header=["id", "image", "dataset"])
    with pytest.raises(BenchmarkManifestError, match=r"missing column\(s\) mask, kind, width"):
        read_benchmark_manifest(bad)
    with pytest.raises(BenchmarkManifestError, match="no rows"):
        read_benchmark_manifest(_write_manifest(tmp_path / "empty.csv", []))
    with pytest.raises(BenchmarkManifestError, match="duplicate id 'a'"):
        read_benchmark_manifest(_write_manifest(tmp_path / "dup.csv", [_row("a", "a.png"), _row("a", "b.png")]))


def _synthetic_manifest(folder: Path) -> Path:
    """Real BSDS photos: three splices with their masks in two datasets, two pristine photos."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for number, (host, donor, dataset) in enumerate([(2, 3, "alpha"), (4, 5, "alpha"), (6, 7, "beta")]):
        image, mask = _splice(host, donor)
        Image.fromarray(image).save(folder / "images" / f"splice{number}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"splice{number}.png")
        rows.append(_row(f"splice{number}", f"images/splice{number}.png", f"masks/splice{number}.png", dataset,
                         size=(image.shape[1], image.shape[0])))
    for number, index in enumerate((8, 9)):
        photo = _jpeg(_photo(index), 90)
        Image.fromarray(photo).save(folder / "images" / f"pristine{number}.png")
        rows.append(_row(f"pristine{number}", f"images/pristine{number}.png", "", "beta", "pristine",
                         (photo.shape[1], photo.shape[0])))
    return _write_manifest(folder / "manifest.csv", rows)


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_bad_rows_are_skipped_with_their_reason_or_fatal_when_strict(tmp_path):
    manifest = _synthetic_manifest(tmp_path / "set")
    rows = read_benchmark_manifest(manifest)
    (tmp_path / "set" / "images" / "splice1.png").unlink()  # missing image
    Image.new("L", (10, 10)).save(tmp_path / "set" / "masks" / "splice2.png")  # mask of another size
    methods = {"span": ela_map, "constant": constant_map}
    results, skipped, _ = evaluate_rows(rows, load_image=_load, methods=methods, image_score=lambda m: float(m.max()),
                                        threshold=0.5, progress=False)
    assert [r.row.id for r in results] == ["splice0", "pristine0", "pristine1"]
    reasons = {entry["id"]: entry["reason"] for entry in skipped}
    assert "image file not found" in reasons["splice1"]
    assert "mask size 10x10 differs from image size" in reasons["splice2"]
    with pytest.raises(RowError, match="splice1"):
        evaluate_rows(rows, load_image=_load, methods=methods, image_score=lambda m: float(m.max()),
                      threshold=0.5, strict=True, progress=False)


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
        read_benchmark_manifest(manifest), load_image=lambda path: decode_image(path.read_bytes(), max_pixels=10**8).rgb,
        methods={"ela": ela_map}, image_score=lambda m: float(m.max()), threshold=0.5, progress=False)
    assert [result.row.id for result in results] == ["displayed"] and warnings == []
    assert skipped[0]["id"] == "stored"
    assert "mask size 450x600 differs from image size 600x450 (image after EXIF orientation)" in skipped[0]["reason"]


def test_a_map_with_nan_skips_the_row_instead_of_poisoning_the_averages(tmp_path):
    rows = read_benchmark_manifest(_synthetic_manifest(tmp_path / "set"))[:2]

    def broken(rgb):
        heatmap = ela_map(rgb)
        heatmap[0, 0] = np.nan
        return heatmap

    results, skipped, _ = evaluate_rows(rows, load_image=_load, methods={"span": broken, "ela": ela_map},
                                        image_score=lambda m: float(m.mean()), threshold=0.5, progress=False)
    assert results == [] and len(skipped) == 2 and "NaN" in skipped[0]["reason"]


def test_report_has_every_key_and_no_nan_even_when_undefined(tmp_path):
    manifest = _synthetic_manifest(tmp_path / "set")
    Image.new("L", Image.open(tmp_path / "set" / "masks" / "splice2.png").size, 255).save(
        tmp_path / "set" / "masks" / "splice2.png")  # all-white mask: no pixel metrics for that row
    rows = read_benchmark_manifest(manifest)
    methods = {"span": ela_map, "constant": constant_map, "ela": ela_map}
    results, skipped, warnings = evaluate_rows(rows, load_image=_load, methods=methods,
                                               image_score=lambda m: float(m.mean()), threshold=0.5, progress=False)
    report = build_report(results, manifest=manifest, model={"trained": False}, skipped=skipped, warnings=warnings,
                          settings={}, threshold=0.5, n_rows=len(rows), seconds=1.0)
    assert skipped == [] and any("all white" in w["warning"] for w in warnings)
    span = report["results"]["span"]
    assert span["n_images"] == 5 and span["n_pixel_images"] == 2
    assert set(span["by_dataset"]) == {"alpha", "beta"}
    # beta: the all-white splice is positive, the pristine photos negative; alpha has no pristine row.
    assert span["by_dataset"]["alpha"]["image_auc"] is None and "only one class" in span["by_dataset"]["alpha"]["notes"]["image_auc"]
    assert span["by_dataset"]["beta"]["pixel_auc"] is None and "pixel_auc" in span["by_dataset"]["beta"]["notes"]
    assert report["results"]["constant"]["pixel_auc"] == 0.5
    for block in [span, *span["by_dataset"].values()]:
        assert set(REQUIRED + INVERSE_KEYS) <= set(block)
    path = tmp_path / "report.json"
    write_report(report, path)
    assert "NaN" not in path.read_text()
    assert "span" in format_table(report) and "alpha" in format_table(report)


# ---------------------------------------------------------------- the command, end to end, with the committed model

def _span(*arguments: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SPAN), "evaluate", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_cli_on_a_synthetic_manifest_writes_every_key_and_a_grid(tmp_path):
    manifest = _synthetic_manifest(tmp_path / "set")
    out, grid = tmp_path / "report.json", tmp_path / "grid.png"
    done = _span(str(manifest), "--out", str(out), "--grid", str(grid), "--grid-rows", "3", "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["manifest"] == str(manifest) and isinstance(report["model"]["trained"], bool)
    assert report["model"]["sha256"] and report["skipped"] == []
    assert set(report["results"]) == {"span", "constant", "ela"}
    for method, block in report["results"].items():
        assert set(block["by_dataset"]) == {"alpha", "beta"}
        for values in [block, *block["by_dataset"].values()]:
            for key in REQUIRED + INVERSE_KEYS:
                assert key in values, (method, key)
        assert block["n_images"] == 5 and block["n_pixel_images"] == 3
        for key in PIXEL_KEYS + ("image_auc", "image_bacc"):
            assert 0.0 <= block[key] <= 1.0, (method, key)
    constant = report["results"]["constant"]
    assert constant["pixel_auc"] == 0.5 and constant["image_auc"] == 0.5 and constant["pixel_mcc"] == 0.0
    assert report["results"]["ela"]["pixel_auc"] > 0.8  # the pasted regions are ELA's textbook case
    assert report["results"]["span"]["by_dataset"]["alpha"]["image_auc"] is None  # alpha has no pristine row
    # The terminal table carries the same number as the report.
    assert f"{report['results']['ela']['pixel_auc']:.3f}" in done.stdout
    # The model's score is the one the service answers for the same file.
    from service.analysis import analyze_bytes
    from service.engine import Engine
    from service.settings import get_settings

    engine = Engine.from_settings(get_settings())
    try:
        answer = analyze_bytes((tmp_path / "set" / "images" / "splice0.png").read_bytes(), engine, get_settings())
    finally:
        engine.close()
    assert report["images"][0]["id"] == "splice0"
    assert report["images"][0]["score"]["span"] == pytest.approx(answer.score, abs=1e-6)
    assert report["model"]["sha256"] == engine.manifest.sha256
    picture = Image.open(grid)
    assert picture.width > 4 * 200 and picture.height > 3 * 150


def test_cli_refuses_a_broken_manifest_with_a_clear_message(tmp_path):
    bad = _write_manifest(tmp_path / "bad.csv", [_row("a", "a.png")], header=["id", "image"])
    done = _span(str(bad), "--no-progress", timeout=120)
    assert done.returncode == 2
    assert "missing column(s) mask" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not DEV_MANIFEST.is_file(), reason="shared dev benchmark not present")
def test_cli_on_the_real_dev_manifest_with_a_limit(tmp_path):
    out = tmp_path / "dev.json"
    done = _span(str(DEV_MANIFEST), "--limit", "3", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["n_rows"] == 3 and report["skipped"] == []
    span = report["results"]["span"]
    assert span["n_images"] == 3 and span["n_pixel_images"] == 3
    assert [image["id"] for image in report["images"]] == [row.id for row in read_benchmark_manifest(DEV_MANIFEST)[:3]]
    assert span["image_auc"] is None and "only one class" in span["notes"]["image_auc"]
    assert 0.0 <= span["pixel_auc"] <= 1.0


def test_recorded_scores_land_in_the_manifest_of_the_weights_evaluated_only(tmp_path):
    import shutil

    from service.evaluate import EvaluationError, record_scores
    from service.manifest import load_manifest

    weights = tmp_path / "weights"
    shutil.copytree(ROOT / "weights", weights)
    manifest = load_manifest(weights)
    block = {"pixel_auc": 0.61, "image_auc": 0.55, "n_images": 3, "notes": {}, "by_dataset": {"x": {"pixel_auc": 0.6}}}
    report = {"manifest": "bench/manifest.csv", "n_rows": 3, "skipped": [],
              "model": {"sha256": manifest.sha256, "model_dir": str(weights)},
              "settings": {"threshold": 0.5, "engine": {"large_image_policy": "resize"}},
              "results": {"span": block, "ela": {**block, "pixel_auc": 0.7}}}
    record_scores(report, "bench")
    recorded = load_manifest(weights).scores["bench"]  # the model files still verify
    assert recorded["results"]["span"]["pixel_auc"] == 0.61 and recorded["results"]["ela"]["pixel_auc"] == 0.7
    assert recorded["results"]["span"]["by_dataset"] == {"x": {"pixel_auc": 0.6}}
    assert "notes" not in recorded["results"]["span"] and recorded["manifest"] == "bench/manifest.csv"
    with pytest.raises(EvaluationError, match="other weights"):
        record_scores({**report, "model": {"sha256": "0" * 64, "model_dir": str(weights)}}, "bench")
    # A run of the int8 model lands beside the fp32 scores (the int8 gate's evidence), and only
    # if the int8 file evaluated is the one listed.
    if "span.int8.onnx" in manifest.files:
        int8 = manifest.with_precision("int8")
        record_scores({**report, "model": {**int8.model_info(), "model_dir": str(weights)}}, "bench")
        assert load_manifest(weights).scores["bench@int8"]["results"]["span"]["pixel_auc"] == 0.61
        with pytest.raises(EvaluationError, match="other weights"):
            record_scores({**report, "model": {**manifest.model_info(), "precision": "int8",
                                               "model_dir": str(weights)}}, "bench")

    # Through the command: the scores land in the manifest of the folder it evaluated (SPAN_MODEL_DIR),
    # under NAME for the fp32 file and NAME@int8 for the int8 one.
    synthetic = _synthetic_manifest(tmp_path / "set")
    for precision, key in (("fp32", "synthetic"), ("int8", "synthetic@int8")):
        if precision == "int8" and "span.int8.onnx" not in manifest.files:
            continue
        done = _span(str(synthetic), "--record", "synthetic", "--out", str(tmp_path / "r.json"), "--no-progress",
                     env={"SPAN_MODEL_DIR": str(weights), "SPAN_PRECISION": precision})
        assert done.returncode == 0, done.stderr
        assert f"recorded under scores.{key} in {weights / 'manifest.json'}" in done.stdout
        evaluated = json.loads((tmp_path / "r.json").read_text())["results"]["span"]["pixel_auc"]
        assert load_manifest(weights).scores[key]["results"]["span"]["pixel_auc"] == evaluated
    refused = _span(str(synthetic), "--record", "a@int8", "--no-progress", env={"SPAN_MODEL_DIR": str(weights)})
    assert refused.returncode == 2 and "reserved" in refused.stderr
    assert "bench" in load_manifest(weights).scores  # earlier records are kept


@pytest.mark.skipif(not DEV_MANIFEST.is_file(), reason="shared dev benchmark not present")
def test_cli_scores_forensic_layers_as_methods_on_the_same_rows(tmp_path):
    """Two NoSo copy-move rows of the dev benchmark: the copy-move layer finds the copied regions
    (pixel AUC well above the constant's 0.5), and every layer asked for is a method of the report."""
    rows = [row for row in read_benchmark_manifest(DEV_MANIFEST) if row.id in ("noso__06_mod", "noso__02_mod")]
    manifest = _write_manifest(tmp_path / "copymove.csv", [
        _row(row.id, str(row.image), str(row.mask), dataset=row.dataset, kind=row.kind) for row in rows])
    out = tmp_path / "layers.json"
    done = _span(str(manifest), "--layers", "copymove,noise", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"span", "constant", "ela", "copymove", "noise"}
    assert report["settings"]["layers"] == ["copymove", "noise"]
    copymove = report["results"]["copymove"]
    assert copymove["n_pixel_images"] == 2 and copymove["pixel_auc"] > 0.65
    assert copymove["by_kind"]["noso/copy-move"]["pixel_auc"] == copymove["pixel_auc"]
    assert "copymove" in done.stdout
    refused = _span(str(manifest), "--layers", "metadata", "--no-progress", timeout=60)
    assert refused.returncode == 2 and "not a pixel layer" in refused.stderr
