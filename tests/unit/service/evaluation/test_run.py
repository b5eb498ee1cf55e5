"""service/evaluation/run.py and `span evaluate`: rows, the command end to end, recorded scores."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from service.evaluation.baselines import constant_map, ela_map
from service.evaluation.benchmark import RowError, read_benchmark
from service.evaluation.metrics import INVERSE_KEYS, PIXEL_KEYS
from service.evaluation.run import evaluate_rows

from evaluation_data import DEV_MANIFEST, REQUIRED, ROOT, _load, _row, _span, _synthetic_manifest, _write_manifest


def test_bad_rows_are_skipped_with_their_reason_or_fatal_when_strict(tmp_path):
    manifest = _synthetic_manifest(tmp_path / "set")
    rows = read_benchmark(manifest)
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


def test_a_map_with_nan_skips_the_row_instead_of_poisoning_the_averages(tmp_path):
    rows = read_benchmark(_synthetic_manifest(tmp_path / "set"))[:2]

    def broken(rgb):
        heatmap = ela_map(rgb)
        heatmap[0, 0] = np.nan
        return heatmap

    results, skipped, _ = evaluate_rows(rows, load_image=_load, methods={"span": broken, "ela": ela_map},
                                        image_score=lambda m: float(m.mean()), threshold=0.5, progress=False)
    assert results == [] and len(skipped) == 2 and "NaN" in skipped[0]["reason"]


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


def test_cli_decides_pixels_and_images_at_the_operating_point_it_is_given(tmp_path):
    """--threshold and --relative-cut make the pixel decision (F1 at the threshold), --image-threshold
    the image one (image_bacc); the report names all three and each can be recomputed from it."""
    from spancore.scoring import Confusion

    manifest = _synthetic_manifest(tmp_path / "set")
    reports = {}
    for cut in (0.0, 0.9):
        out = tmp_path / f"cut{cut}.json"
        done = _span(str(manifest), "--out", str(out), "--no-progress", "--threshold", "0.05",
                     "--relative-cut", str(cut), "--image-threshold", "0.7")
        assert done.returncode == 0, done.stderr
        reports[cut] = json.loads(out.read_text())
        assert "image threshold 0.7" in done.stdout
    settings = reports[0.9]["settings"]
    assert (settings["threshold"], settings["relative_cut"], settings["image_threshold"]) == (0.05, 0.9, 0.7)
    for method in ("span", "ela"):
        rows = reports[0.9]["images"]
        labels = np.array([row["label"] for row in rows], bool)
        scores = np.array([row["score"][method] for row in rows])
        expected = Confusion.of(scores >= 0.7, labels).balanced_accuracy()
        assert reports[0.9]["results"][method]["image_bacc"] == pytest.approx(expected)
    # ELA is normalised to its peak, so a cut at 0.9 of it keeps only its strongest pixels:
    # the marked area shrinks, and with it the F1 at the threshold changes, while AUC cannot.
    ela = {cut: report["results"]["ela"] for cut, report in reports.items()}
    assert ela[0.9]["pixel_auc"] == ela[0.0]["pixel_auc"]
    assert ela[0.9]["pixel_f1_fixed"] != ela[0.0]["pixel_f1_fixed"]


def test_cli_refuses_a_broken_manifest_with_a_clear_message(tmp_path):
    bad = _write_manifest(tmp_path / "bad.csv", [_row("a", "a.png")], header=["id", "image"])
    done = _span(str(bad), "--no-progress", timeout=120)
    assert done.returncode == 2
    assert "missing column(s) mask" in done.stderr and "Traceback" not in done.stderr


def test_cli_on_the_real_dev_manifest_with_a_limit(tmp_path):
    out = tmp_path / "dev.json"
    done = _span(str(DEV_MANIFEST), "--limit", "3", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["n_rows"] == 3 and report["skipped"] == []
    span = report["results"]["span"]
    assert span["n_images"] == 3 and span["n_pixel_images"] == 3
    assert [image["id"] for image in report["images"]] == [row.id for row in read_benchmark(DEV_MANIFEST)[:3]]
    assert span["image_auc"] is None and "only one class" in span["notes"]["image_auc"]
    assert 0.0 <= span["pixel_auc"] <= 1.0


def test_recorded_scores_land_in_the_manifest_of_the_weights_evaluated_only(tmp_path):
    import shutil

    from service.evaluation.benchmark import EvaluationError
    from service.evaluation.run import record_scores
    from spancore.weights import load_manifest

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
