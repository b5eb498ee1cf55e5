"""Ship the inpainting generator: ONNX + manifest into weights/inpaint/.

    python -m models.export_inpainting runs/inpaint-cpu/final.pt [--out weights/inpaint]

The ONNX graph takes ``image`` (float32 N×3×H×W, RGB 0..255) and ``mask`` (float32 N×1×H×W,
1 = hole) with dynamic N, H, W (H and W multiples of 8; service/forge.py pads) and returns
``inpainted`` (float32 N×3×H×W, 0..255): the refined fill inside the hole, the input outside.
Exported with the TorchScript tracer (``dynamo=False``) as models/export.py does, then checked
against torch with ONNX Runtime; the manifest records the sha256 the runtime verifies.
"""
from __future__ import annotations

import datetime as _dt
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.deepfill import DeepFillConfig, DeepFillGenerator
from spancore.weights import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
OPSET = 17
ONNX_FILE = "deepfill.onnx"
PARITY_SIZES = ((128, 128), (96, 160))


class Inpainter(nn.Module):
    """The exported function: composited 0..255 result."""

    def __init__(self, generator: DeepFillGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generator.inpaint(image, mask)


def export_onnx(generator: DeepFillGenerator, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = Inpainter(generator.eval()).eval()
    image = torch.rand(1, 3, 64, 64) * 255
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 20:44] = 1
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # informational: strided slices are left to ORT's own constant folding; the legacy
        # (TorchScript) exporter is chosen on purpose, as in models/export.py
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(model, (image, mask), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["image", "mask"], output_names=["inpainted"],
                          dynamic_axes={"image": axes, "mask": axes, "inpainted": axes},
                          do_constant_folding=True)
    return path


def generator_from_onnx(manifest_path: Path) -> dict:
    """The inverse of ``export``: a generator checkpoint (``config``, ``state_dict``, ``step``)
    rebuilt from a shipped ONNX file and its manifest, so training can continue from what
    shipped when the run's ckpt.pt is gone. The exporter keeps every parameter as an
    initializer named after it (``generator.<name>``); a missing or misshapen one is refused."""
    import onnx
    from onnx import numpy_helper

    manifest = json.loads(Path(manifest_path).read_text())
    onnx_path = Path(manifest_path).parent / manifest["onnx"]["file"]
    if sha256_file(onnx_path) != manifest["files"][manifest["onnx"]["file"]]["sha256"]:
        raise ValueError(f"{onnx_path} does not match the sha256 in {manifest_path}")
    config = {k: v for k, v in manifest["architecture"].items() if k not in ("name", "parameters")}
    generator = DeepFillGenerator(DeepFillConfig(**config))
    stored = {init.name.removeprefix("generator."): numpy_helper.to_array(init)
              for init in onnx.load(str(onnx_path)).graph.initializer if init.name.startswith("generator.")}
    state = {}
    for name, tensor in generator.state_dict().items():
        if name not in stored or tuple(stored[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{onnx_path} has no parameter {name} of shape {tuple(tensor.shape)}")
        state[name] = torch.from_numpy(stored[name].copy())
    return {"config": config, "state_dict": state, "step": manifest.get("training", {}).get("step") or 0}


def parity(generator: DeepFillGenerator, path: Path, seed: int = 0) -> float:
    """Largest |torch - ORT| (0..255 units) over random images and holes at PARITY_SIZES."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for h, w in PARITY_SIZES:
        image = (rng.random((2, 3, h, w)) * 255).astype(np.float32)
        mask = np.zeros((2, 1, h, w), np.float32)
        mask[0, :, h // 4:h // 2, w // 3:2 * w // 3] = 1
        mask[1, :, h // 2:, : w // 2] = 1
        with torch.no_grad():
            ref = generator.eval().inpaint(torch.from_numpy(image), torch.from_numpy(mask)).numpy()
        got = session.run(["inpainted"], {"image": image, "mask": mask})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def export(checkpoint: Path, out: Path, *, training: dict | None = None, scores: dict | None = None,
           command: str | None = None) -> Path:
    """Write out/deepfill.onnx and out/manifest.json; returns the manifest path."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "generator" in ckpt:  # a run's ckpt.pt (paused by --max-minutes) rather than its final.pt
        ckpt = {"config": {"cnum": ckpt["config"]["cnum"]}, "state_dict": ckpt["generator"],
                "step": ckpt["step"], "train_config": ckpt["config"]}
    generator = DeepFillGenerator.from_checkpoint(ckpt)
    onnx_path = export_onnx(generator, out / ONNX_FILE)
    diff = parity(generator, onnx_path)
    if diff > 0.5:
        raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.3f} (0..255): export refused")
    manifest = {
        "name": "deepfill",
        "purpose": "inpainting generator for removal forgeries (span forge, synthesis kind 'deep-inpaint'); "
                   "not a detector",
        "architecture": {"name": "DeepFill v2 gated convolutions, coarse-to-fine, contextual attention "
                         "(v1) in the refinement", **generator.config.to_dict(),
                         "parameters": sum(p.numel() for p in generator.parameters())},
        "input": {"image": {"dtype": "float32", "layout": "NCHW", "colour": "RGB", "range": [0, 255]},
                  "mask": {"dtype": "float32", "layout": "N1HW", "values": "1 = hole, 0 = keep"},
                  "size_multiple": 8},
        "output": {"inpainted": {"dtype": "float32", "layout": "NCHW", "range": [0, 255],
                                 "note": "input pixels outside the hole, the generator's fill inside"}},
        "trained_size": int(ckpt.get("train_config", {}).get("size", 0)) or None,
        "onnx": {"file": ONNX_FILE, "opset": OPSET, "parity_max_abs_diff": diff,
                 "parity_sizes": [list(s) for s in PARITY_SIZES]},
        "files": {ONNX_FILE: {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size}},
        "training": {"step": ckpt.get("step"), "config": ckpt.get("train_config"), **(training or {})},
        "scores": scores or {},
        "produced_by": {"command": command, "git_commit": _git_commit(),
                        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "torch": torch.__version__.split("+")[0]},
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


if __name__ == "__main__":
    import argparse
    import shlex
    import sys

    parser = argparse.ArgumentParser(description="Export the inpainting generator to weights/inpaint/.")
    parser.add_argument("checkpoint", type=Path, help="a run's final.pt or ckpt.pt (models/train_inpainting.py)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "weights" / "inpaint")
    parser.add_argument("--scores", type=Path, default=None, help="JSON of held-out scores to record")
    args = parser.parse_args()
    scores = json.loads(args.scores.read_text()) if args.scores else None
    cmd = "python -m models.export_inpainting " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(export(args.checkpoint, args.out, scores=scores, command=cmd))
