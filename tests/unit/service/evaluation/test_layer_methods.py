"""`span evaluate --layers`: the forensic layers' maps scored as further methods on the benchmark's rows."""
from __future__ import annotations

import json

import pytest

from service.evaluation.benchmark import EvaluationError, read_benchmark
from service.evaluation.layers import layer_methods

from evaluation_data import DEV_MANIFEST, _row, _span, _write_manifest


def test_layer_methods_skip_ela_and_refuse_non_pixel_layers():
    assert set(layer_methods(["ela", "noise", "copymove"])) == {"noise", "copymove"}  # ela is the ELA baseline
    with pytest.raises(EvaluationError, match="not a pixel layer: metadata"):
        layer_methods(["metadata"])


@pytest.mark.skipif(not DEV_MANIFEST.is_file(), reason="shared dev benchmark not present")
def test_cli_scores_forensic_layers_as_methods_on_the_same_rows(tmp_path):
    """Two NoSo copy-move rows of the dev benchmark: the copy-move layer finds the copied regions
    (pixel AUC well above the constant's 0.5), and every layer asked for is a method of the report."""
    rows = [row for row in read_benchmark(DEV_MANIFEST) if row.id in ("noso__03_mod", "noso__02_mod")]
    manifest = _write_manifest(tmp_path / "copymove.csv", [
        _row(row.id, str(row.image), str(row.mask), dataset=row.dataset, kind=row.kind) for row in rows])
    out = tmp_path / "layers.json"
    done = _span(str(manifest), "--layers", "copymove,noise", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"span", "constant", "ela", "copymove", "noise"}
    assert report["settings"]["layers"] == ["copymove", "noise"]
    copymove = report["results"]["copymove"]
    # Both copies are found on each row (the layer's residual check verifies them), so each map
    # is above the constant's 0.5; it marks the source as well as the pasted copy, which caps it.
    assert copymove["n_pixel_images"] == 2 and copymove["pixel_auc"] > 0.55
    assert all(image["pixel"]["copymove"]["pixel_auc"] > 0.55 for image in report["images"]), report["images"]
    assert copymove["by_kind"]["noso/copy-move"]["pixel_auc"] == copymove["pixel_auc"]
    assert "copymove" in done.stdout
    refused = _span(str(manifest), "--layers", "metadata", "--no-progress", timeout=60)
    assert refused.returncode == 2 and "not a pixel layer" in refused.stderr
