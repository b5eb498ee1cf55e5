"""spancore.weights: the runtime reads the manifest and refuses files that do not match it."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spancore.weights import ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[3]


def _write_weights(directory: Path, files: dict[str, bytes], **overrides) -> Path:
    for name, content in files.items():
        (directory / name).write_bytes(content)
    manifest = {
        "name": "span",
        "version": "0.1.0",
        "trained": False,
        "status": "UNTRAINED: random initialisation, not a detector",
        "architecture": {"name": "pooled"},
        "input": {"name": "image", "dtype": "float32", "layout": "NCHW", "colour": "RGB", "range": [0, 255]},
        "output": {"name": "heatmap", "dtype": "float32", "layout": "N1HW", "range": [0, 1]},
        "files": {n: {"sha256": hashlib.sha256(c).hexdigest(), "bytes": len(c)} for n, c in files.items()},
        "produced_by": {"command": "test"},
        "scores": {},
        **overrides,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_loads_and_exposes_metadata(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"model bytes", "span.pt": b"torch bytes"})
    manifest = load_manifest(tmp_path)
    assert manifest.onnx_path == tmp_path / "span.onnx"
    assert manifest.sha256 == hashlib.sha256(b"model bytes").hexdigest()
    assert manifest.model_info() == {"name": "span", "version": "0.1.0", "sha256": manifest.sha256, "trained": False,
                                     "precision": "fp32"}
    assert manifest.describe()["status"].startswith("UNTRAINED")
    assert manifest.describe()["warning"].startswith("UNTRAINED MODEL")  # even where the file sets none
    assert (manifest.input_name, manifest.output_name) == ("image", "heatmap")
    assert load_manifest(tmp_path / "manifest.json") == manifest


def test_a_trained_model_carries_its_makers_caveat_or_none(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"m"}, trained=True, status="trained", warning="weak budget")
    assert load_manifest(tmp_path).describe()["warning"] == "weak budget"
    _write_weights(tmp_path, {"span.onnx": b"m"}, trained=True, status="trained")
    assert load_manifest(tmp_path).describe()["warning"] is None


def test_refuses_onnx_whose_sha256_differs_naming_both_digests(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"model bytes"})
    (tmp_path / "span.onnx").write_bytes(b"tampered bytes")
    with pytest.raises(ManifestError) as excinfo:
        load_manifest(tmp_path)
    message = str(excinfo.value)
    assert hashlib.sha256(b"model bytes").hexdigest() in message
    assert hashlib.sha256(b"tampered bytes").hexdigest() in message
    assert "span.onnx" in message
    assert load_manifest(tmp_path, verify=False).name == "span"  # tooling may still read it


def test_refuses_a_mismatching_checkpoint_but_allows_it_absent(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"model", "span.pt": b"torch"})
    (tmp_path / "span.pt").unlink()
    load_manifest(tmp_path)  # runtime-only deployments may leave the torch file out
    (tmp_path / "span.pt").write_bytes(b"other torch")
    with pytest.raises(ManifestError, match="span.pt"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    "breakage,match",
    [
        (lambda d: (d / "span.onnx").unlink(), "missing"),
        (lambda d: (d / "manifest.json").unlink(), "no model manifest"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "cannot read"),
        (lambda d: (d / "manifest.json").write_text(json.dumps({"name": "span"})), "lacks"),
    ],
)
def test_clear_errors_for_broken_weights(tmp_path, breakage, match):
    _write_weights(tmp_path, {"span.onnx": b"model"})
    breakage(tmp_path)
    with pytest.raises(ManifestError, match=match):
        load_manifest(tmp_path)


def test_manifest_reader_does_not_import_torch():
    code = "import sys, spancore.weights; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def _scores(fp32: float, int8: float | None, key: str = "dev") -> dict:
    scores = {key: {"results": {"span": {"pixel_auc": fp32}}}}
    if int8 is not None:
        scores[key + "@int8"] = {"results": {"span": {"pixel_auc": int8}}}
    return scores


@pytest.mark.parametrize(
    "files,scores,passed",
    [
        ({"span.onnx": b"m"}, _scores(0.61, 0.609), False),  # no int8 file listed
        ({"span.onnx": b"m", "span.int8.onnx": b"q"}, _scores(0.61, None), False),  # int8 never scored
        ({"span.onnx": b"m", "span.int8.onnx": b"q"}, _scores(0.61, 0.605), True),  # drop 0.005
        ({"span.onnx": b"m", "span.int8.onnx": b"q"}, _scores(0.61, 0.595), False),  # drop 0.015
        # every benchmark scored both ways must pass: the worst one decides
        ({"span.onnx": b"m", "span.int8.onnx": b"q"}, {**_scores(0.61, 0.609), **_scores(0.7, 0.68, "other")}, False),
    ],
)
def test_int8_gate_reads_the_recorded_scores(tmp_path, files, scores, passed):
    manifest = load_manifest(_write_weights(tmp_path, files, scores=scores))
    verdict, reason = manifest.int8_gate()
    assert verdict is passed and reason


def test_int8_left_out_of_a_deployment_means_fp32(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"m", "span.int8.onnx": b"q"}, scores=_scores(0.61, 0.61))
    (tmp_path / "span.int8.onnx").unlink()  # like span.pt, optional at runtime
    verdict, reason = load_manifest(tmp_path).int8_gate()
    assert verdict is False and "not deployed" in reason


def test_precision_picks_the_file_its_digest_and_answers_name_it(tmp_path):
    manifest = load_manifest(_write_weights(tmp_path, {"span.onnx": b"m", "span.int8.onnx": b"q"}))
    int8 = manifest.with_precision("int8")
    assert int8.onnx_path == tmp_path / "span.int8.onnx"
    assert int8.sha256 == hashlib.sha256(b"q").hexdigest() != manifest.sha256
    assert int8.model_info()["precision"] == "int8" and manifest.model_info()["precision"] == "fp32"
    (tmp_path / "plain").mkdir()
    plain = load_manifest(_write_weights(tmp_path / "plain", {"span.onnx": b"m"}))
    with pytest.raises(ManifestError, match="lists no span.int8.onnx"):
        plain.with_precision("int8")


@pytest.mark.parametrize("setting,drop,expected", [("auto", 0.005, "int8"), ("auto", 0.02, "fp32"),
                                                    ("auto", None, "fp32"), ("fp32", 0.005, "fp32"), ("int8", 0.02, "int8")])
def test_precision_setting_auto_follows_the_gate_and_explicit_values_win(tmp_path, setting, drop, expected):
    from service.engine import choose_precision
    from service.settings import Settings

    scores = _scores(0.61, None if drop is None else 0.61 - drop)
    manifest = load_manifest(_write_weights(tmp_path, {"span.onnx": b"m", "span.int8.onnx": b"q"}, scores=scores))
    settings = Settings(model_dir=tmp_path, providers=["CPUExecutionProvider"], precision=setting)
    assert choose_precision(manifest, settings) == expected


def test_saving_the_committed_manifest_writes_the_same_bytes(tmp_path):
    """The model reads and writes manifest.json without reordering or dropping a key."""
    committed = load_manifest(REPO / "weights", verify=False)
    written = committed.save(tmp_path)
    assert written.read_bytes() == (REPO / "weights" / "manifest.json").read_bytes()


def test_recording_scores_keeps_the_digests_and_refuses_other_weights(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"model bytes"}, custom={"kept": True})
    manifest = load_manifest(tmp_path)
    manifest.record_scores("dev", {"results": {"span": {"pixel_auc": 0.7}}}, evaluated_sha256=manifest.sha256,
                           precision="fp32")
    again = load_manifest(tmp_path)  # still verifies: the model file was not touched
    assert again.scores["dev"]["results"]["span"]["pixel_auc"] == 0.7
    assert json.loads((tmp_path / "manifest.json").read_text())["custom"] == {"kept": True}  # unknown keys survive
    with pytest.raises(ManifestError, match="other weights"):
        again.record_scores("dev", {}, evaluated_sha256="0" * 64, precision="fp32")
    with pytest.raises(ManifestError, match="other weights"):  # no int8 file listed
        again.record_scores("dev", {}, evaluated_sha256=manifest.sha256, precision="int8")


def test_a_malformed_field_is_a_manifest_error_naming_it(tmp_path):
    _write_weights(tmp_path, {"span.onnx": b"m"}, trained={"not": "a bool"})
    with pytest.raises(ManifestError, match="trained"):
        load_manifest(tmp_path)
