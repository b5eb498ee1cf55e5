"""service.manifest: the runtime reads the manifest and refuses files that do not match it."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.manifest import ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[1]


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
    assert manifest.model_info() == {"name": "span", "version": "0.1.0", "sha256": manifest.sha256, "trained": False}
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
    code = "import sys, service.manifest; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
