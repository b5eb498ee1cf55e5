"""The weights contract: weights/manifest.json as one pydantic model, written by the exporter
(models/export.py), read and verified by the runtime (service/engine.py), and given scores by
`span evaluate --record` (service/evaluation/). Torch-free.

The runtime refuses an ONNX file whose sha256 differs from the manifest, naming both
digests, so a swapped or truncated model is never served under another model's name.

Precision: weights may come with an int8 variant (``span.int8.onnx``, Featex's 3x3
convolutions quantised). It is used only where the manifest proves it harmless: for every
benchmark scored with both (``scores[K]`` and ``scores[K@int8]``, written by ``span evaluate
--record K``), the pixel AUC drops by less than ``INT8_MAX_AUC_DROP`` (issue 6's gate).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spancore.contract import DEFAULT_THRESHOLD, INT8_MAX_AUC_DROP, INT8_NAME, INT8_SUFFIX, MANIFEST_NAME, ONNX_NAME

__all__ = ["WeightsManifest", "ManifestError", "load_manifest", "sha256_file", "file_entry"]

REQUIRED_KEYS = ("name", "version", "trained", "status", "input", "output", "files")


class ManifestError(RuntimeError):
    """The manifest is missing or malformed, or a file does not match its recorded digest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """A `files` entry: the digest and size the runtime checks the file against."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


class WeightsManifest(BaseModel):
    """weights/manifest.json, in the order its keys are written, plus where it was read from
    (`directory`) and which of its ONNX files runs (`precision`); those two are never saved."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    name: str
    version: str
    trained: bool
    status: str
    caveat: str | None = Field(None, alias="warning")  # what a user must know before trusting a map
    architecture: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any]
    output: dict[str, Any]
    onnx: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]]
    produced_by: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, Any] = Field(default_factory=dict)

    directory: Path = Field(Path("."), exclude=True)
    precision: Literal["fp32", "int8"] = Field("fp32", exclude=True)  # "fp32" (span.onnx) or "int8"

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> WeightsManifest:
        """From a weights directory or the manifest file itself; verify the files by default."""
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
        if not isinstance(data["files"], dict) or "sha256" not in data["files"].get(ONNX_NAME, {}):
            raise ManifestError(f"model manifest {manifest_path} records no sha256 for {ONNX_NAME}")
        data.pop("directory", None)
        data.pop("precision", None)
        try:
            manifest = cls.model_validate({**data, "directory": manifest_path.parent})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ManifestError(f"model manifest {manifest_path} is malformed: {problems}") from None
        if verify:
            manifest.verify()
        return manifest

    def as_json(self) -> dict[str, Any]:
        """The manifest.json object (keys in the exporter's order)."""
        return self.model_dump(mode="json", by_alias=True)

    def save(self, directory: str | Path | None = None) -> Path:
        """Write manifest.json into `directory` (default: where it was read), atomically. The
        manifest itself is not hashed, so rewriting it keeps the model files' digests valid."""
        path = Path(directory or self.directory) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_json(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
        return path

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

    def record_scores(self, key: str, summary: dict[str, Any], *, evaluated_sha256: str, precision: str) -> Path:
        """File an evaluation's score summary under scores[key] (scores[key@int8] for the int8
        file) and save, refusing if the weights here are not the ones evaluated."""
        onnx_file = INT8_NAME if precision == "int8" else ONNX_NAME
        if self.files.get(onnx_file, {}).get("sha256") != evaluated_sha256:
            raise ManifestError(f"{self.directory / MANIFEST_NAME} describes other weights than the ones "
                                f"evaluated ({evaluated_sha256[:12]}…)")
        scores = {**self.scores, scores_key(key, precision): summary}
        return self.model_copy(update={"scores": scores}).save()

    # ------------------------------------------------------------------ what runs
    @property
    def warning(self) -> str | None:
        """What every user must read first: untrained weights, or the exporter's caveat."""
        if not self.trained:
            return f"UNTRAINED MODEL: {self.status}. Its heatmaps and scores carry no evidence."
        return self.caveat

    @property
    def onnx_file(self) -> str:
        return INT8_NAME if self.precision == "int8" else ONNX_NAME

    @property
    def onnx_path(self) -> Path:
        return self.directory / self.onnx_file

    @property
    def sha256(self) -> str:
        """Digest of the ONNX file that runs: the model's identity in answers and telemetry."""
        return self.files[self.onnx_file]["sha256"]

    @property
    def cues(self) -> dict[str, Any] | None:
        """The cue input's contract ({'name', 'version', 'channels', 'block', ...}) of a model that
        takes spancore.cues as its second input; None for an image-only model."""
        return (self.model_extra or {}).get("cues")

    def _extra_float(self, key: str) -> float | None:
        value = (self.model_extra or {}).get(key)
        return None if value is None else float(value)

    @property
    def threshold(self) -> float | None:
        """The operating point chosen on synthetic validation forgeries at training time, if any."""
        return self._extra_float("threshold")

    @property
    def image_threshold(self) -> float | None:
        """The image-score threshold chosen on synthetic validation (balanced accuracy), if any."""
        return self._extra_float("image_threshold")

    def decision_image_threshold(self, override: float | None = None, pixel_threshold: float | None = None) -> float:
        """The image decision's threshold: an explicit setting, else the manifest's, else the
        pixel decision's in use (``pixel_threshold``, else the manifest's): a model calibrated
        before the two were chosen apart keeps the one threshold it had."""
        if override is not None:
            return override
        if self.image_threshold is not None:
            return self.image_threshold
        return self.decision_threshold() if pixel_threshold is None else pixel_threshold

    @property
    def relative_cut(self) -> float | None:
        """The peak-relative cut chosen with the threshold (spancore.scoring.decision_mask), if any."""
        return self._extra_float("relative_cut")

    def decision_relative_cut(self, override: float | None = None) -> float:
        """The cut a deployment uses: an explicit setting, else the manifest's, else 0 (none)."""
        if override is not None:
            return override
        return 0.0 if self.relative_cut is None else self.relative_cut

    def decision_threshold(self, override: float | None = None) -> float:
        """The threshold a deployment uses: an explicit setting, else the manifest's operating point,
        else DEFAULT_THRESHOLD."""
        if override is not None:
            return override
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    @property
    def input_name(self) -> str:
        return self.input["name"]

    @property
    def output_name(self) -> str:
        return self.output["name"]

    def int8_gate(self) -> tuple[bool, str]:
        """Whether the int8 variant may be used, and why (measured scores, not assumed)."""
        if INT8_NAME not in self.files:
            return False, "no int8 variant in these weights"
        if not (self.directory / INT8_NAME).is_file():  # a deployment may leave it out: fp32 then
            return False, f"{INT8_NAME} is listed but not deployed"
        pairs = [(k, k + INT8_SUFFIX) for k in self.scores if not k.endswith(INT8_SUFFIX) and k + INT8_SUFFIX in self.scores]
        if not pairs:
            return False, "int8 not scored against fp32 on any benchmark (span evaluate --record)"
        drops = {}
        for fp32_key, int8_key in pairs:
            try:
                drops[fp32_key] = (self.scores[fp32_key]["results"]["span"]["pixel_auc"]
                                   - self.scores[int8_key]["results"]["span"]["pixel_auc"])
            except (KeyError, TypeError):
                return False, f"scores[{int8_key!r}] or scores[{fp32_key!r}] has no span pixel_auc"
        worst = max(drops, key=drops.get)
        verdict = drops[worst] < INT8_MAX_AUC_DROP
        return verdict, (f"pixel AUC drop fp32 -> int8: {drops[worst]:+.4f} on {worst!r} (worst of {len(drops)}), "
                         f"{'below' if verdict else 'not below'} the {INT8_MAX_AUC_DROP} gate")

    def with_precision(self, precision: str) -> WeightsManifest:
        """This manifest describing the chosen file ('fp32' or 'int8'); 'int8' must be listed."""
        if precision not in ("fp32", "int8"):
            raise ManifestError(f"unknown precision {precision!r}")
        if precision == "int8" and INT8_NAME not in self.files:
            raise ManifestError(f"int8 requested but {self.directory / MANIFEST_NAME} lists no {INT8_NAME}")
        if precision == "int8" and not (self.directory / INT8_NAME).is_file():
            raise ManifestError(f"int8 requested but {self.directory / INT8_NAME} is missing")
        return self.model_copy(update={"precision": precision})

    # ------------------------------------------------------------------ answers
    def model_info(self) -> dict[str, Any]:
        """The ``model`` object of every JSON answer."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "trained": self.trained,
                "precision": self.precision}

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
            "int8_gate": self.int8_gate()[1],
            "cues": self.cues,
            "operating_threshold": self.threshold,
            "operating_relative_cut": self.relative_cut,
            "operating_image_threshold": self.image_threshold,
        }


def scores_key(key: str, precision: str) -> str:
    """Where scores are filed: under ``key``, or ``key@int8`` for the int8 file, so the int8
    model's scores sit beside the fp32 ones (together, the int8 gate's evidence)."""
    return key + INT8_SUFFIX if precision == "int8" else key


def load_manifest(path: str | Path, *, verify: bool = True) -> WeightsManifest:
    """Load a manifest from a weights directory or the manifest file itself; verify by default."""
    return WeightsManifest.load(path, verify=verify)
