"""service/evaluation/report.py: every key present, no NaN, undefined numbers explained."""
from __future__ import annotations

import json

from PIL import Image

from service.evaluation.baselines import constant_map, ela_map
from service.evaluation.benchmark import read_benchmark
from service.evaluation.metrics import INVERSE_KEYS
from service.evaluation.report import build_report, format_table, write_report
from service.evaluation.run import evaluate_rows

from evaluation_data import REQUIRED, _load, _synthetic_manifest


def test_report_has_every_key_and_no_nan_even_when_undefined(tmp_path):
    manifest = _synthetic_manifest(tmp_path / "set")
    Image.new("L", Image.open(tmp_path / "set" / "masks" / "splice2.png").size, 255).save(
        tmp_path / "set" / "masks" / "splice2.png")  # all-white mask: no pixel metrics for that row
    rows = read_benchmark(manifest)
    methods = {"span": ela_map, "constant": constant_map, "ela": ela_map}
    results, skipped, warnings = evaluate_rows(rows, load_image=_load, methods=methods,
                                               image_score=lambda m: float(m.mean()), threshold=0.5, progress=False)
    report = build_report(results, benchmark=manifest, model={"trained": False}, skipped=skipped, warnings=warnings,
                          settings={}, image_threshold=0.5, n_rows=len(rows), seconds=1.0)
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
