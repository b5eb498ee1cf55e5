"""Read weights/manifest.json and verify the files it names before anything runs them.

The manifest is written by ``models/export.py`` (format: docs/architecture.md). The
runtime refuses an ONNX file whose sha256 differs from the manifest, naming both
digests, so a swapped or truncated model is never served under another model's name.
No torch here: this is the runtime side.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Manifest", "ManifestError", "load_manifest", "sha256_file"]

MANIFEST_NAME = "manifest.json"
ONNX_NAME = "span.onnx"
REQUIRED_KEYS = ("name", "version", "trained", "status", "input", "output", "files")


class ManifestError(RuntimeError):
    """The manifest is missing or malformed, or a file does not match its recorded digest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """What the service knows about the model it serves."""

    directory: Path
    name: str
    version: str
    trained: bool
    status: str
    input: dict[str, Any]
    output: dict[str, Any]
    files: dict[str, dict[str, Any]]
    architecture: dict[str, Any] = field(default_factory=dict)
    produced_by: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    caveat: str | None = None  # the manifest's "warning": what a user must know before trusting a map

    @property
    def warning(self) -> str | None:
        """What every user must read first: untrained weights, or the exporter's caveat."""
        if not self.trained:
            return f"UNTRAINED MODEL: {self.status}. Its heatmaps and scores carry no evidence."
        return self.caveat

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_NAME

    @property
    def sha256(self) -> str:
        """Digest of the ONNX file: the model's identity in answers and metrics."""
        return self.files[ONNX_NAME]["sha256"]

    @property
    def input_name(self) -> str:
        return self.input["name"]

    @property
    def output_name(self) -> str:
        return self.output["name"]

    def model_info(self) -> dict[str, Any]:
        """The ``model`` object of every JSON answer."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "trained": self.trained}

    def describe(self) -> dict[str, Any]:
        """Everything a model endpoint may show, the untrained status included."""
        return {
            **self.model_info(),
            "status": self.status,
            "warning": self.warning,
            "input": self.input,
            "output": self.output,
            "architecture": self.architecture,
            "produced_by": self.produced_by,
            "training": self.training,
            "scores": self.scores,
        }

    def verify(self) -> None:
        """Check every listed file that is present against its sha256; the ONNX file must exist.

        Other files (the torch checkpoint) may be left out of a runtime-only deployment,
        but if they are there they must match.
        """
        for name, entry in self.files.items():
            path = self.directory / name
            if not path.is_file():
                if name == ONNX_NAME:
                    raise ManifestError(f"model file {path} is missing (listed in {self.directory / MANIFEST_NAME})")
                continue
            expected = entry.get("sha256", "")
            actual = sha256_file(path)
            if actual != expected:
                raise ManifestError(
                    f"refusing {path}: its sha256 is {actual} but {MANIFEST_NAME} records {expected}; "
                    "the file was changed or replaced after export (re-run `span export`)"
                )


def load_manifest(path: str | Path, *, verify: bool = True) -> Manifest:
    """Load a manifest from a weights directory or the manifest file itself; verify by default."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no model manifest at {manifest_path} (run `span export` to create one)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read model manifest {manifest_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"model manifest {manifest_path} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ManifestError(f"model manifest {manifest_path} lacks {', '.join(missing)}")
    if ONNX_NAME not in data["files"] or "sha256" not in data["files"][ONNX_NAME]:
        raise ManifestError(f"model manifest {manifest_path} records no sha256 for {ONNX_NAME}")
    manifest = Manifest(
        directory=manifest_path.parent,
        name=data["name"],
        version=data["version"],
        trained=bool(data["trained"]),
        status=str(data["status"]),
        input=data["input"],
        output=data["output"],
        files=data["files"],
        architecture=data.get("architecture", {}),
        produced_by=data.get("produced_by", {}),
        scores=data.get("scores", {}),
        training=data.get("training", {}),
        caveat=data.get("warning"),
    )
    if verify:
        manifest.verify()
    return manifest
