"""The shipped inpainting generator (weights/inpaint/deepfill.onnx) on ONNX Runtime, torch-free.

Below both halves: `span forge` (service/forge.py) and the synthesis kind "deep-inpaint"
(models/deep_removal.py) run the same fill. The file's sha256 must match
weights/inpaint/manifest.json before a session is built.

The generator was trained on 128-px crops: a hole is filled inside a context window around it
(the hole's box grown by its own size on every side), scaled so the window's long side is at
most WORK_SIDE, padded to a multiple of 8 by reflection, inpainted, scaled back, and pasted
into the hole only; every pixel outside the hole is the input's.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from spancore.weights import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "inpaint"
ONNX_FILE = "deepfill.onnx"
WORK_SIDE = 256          # longest side of the window the generator sees (trained at 128, fine up to ~256)
CONTEXT = 1.0            # window = hole box grown by CONTEXT × its size on each side
MULTIPLE = 8


class InpainterError(Exception):
    """The generator's files are missing or do not match the manifest (one-line message)."""


class Inpainter:
    """The ONNX generator (sha256-checked), one session per process."""

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, threads: int = 1):
        import onnxruntime as ort

        manifest_path = weights_dir / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
            expected = manifest["files"][ONNX_FILE]["sha256"]
        except (OSError, ValueError, KeyError) as error:
            raise InpainterError(f"no usable inpainting manifest at {manifest_path} ({error})") from None
        path = weights_dir / ONNX_FILE
        if not path.is_file():
            raise InpainterError(f"inpainting model missing: {path}")
        actual = sha256_file(path)
        if actual != expected:
            raise InpainterError(f"{path} has sha256 {actual[:12]}, the manifest says {expected[:12]}: refusing to run it")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.sha256 = actual
        self.manifest = manifest

    def fill_window(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Inpaint a small RGB uint8 window (any size: padded to a multiple of 8 by reflection)."""
        h, w = mask.shape
        ph, pw = -h % MULTIPLE, -w % MULTIPLE
        img = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
        m = np.pad(mask, ((0, ph), (0, pw)))
        out = self.session.run(["inpainted"], {
            "image": np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32),
            "mask": np.ascontiguousarray(m[None, None], dtype=np.float32)})[0]
        return np.clip(np.rint(out[0].transpose(1, 2, 0)[:h, :w]), 0, 255).astype(np.uint8)

    def fill(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """The whole image with the hole (mask > 0) replaced; pixels outside it are the input's, bit for bit."""
        hole = mask > 0
        h, w = hole.shape
        ys, xs = np.nonzero(hole)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        gy, gx = int(np.ceil(CONTEXT * (y1 - y0))), int(np.ceil(CONTEXT * (x1 - x0)))
        wy0, wy1, wx0, wx1 = max(0, y0 - gy), min(h, y1 + gy), max(0, x0 - gx), min(w, x1 + gx)
        window, wmask = image[wy0:wy1, wx0:wx1], hole[wy0:wy1, wx0:wx1].astype(np.uint8)
        wh, ww = wmask.shape
        scale = min(1.0, WORK_SIDE / max(wh, ww))
        if scale < 1:
            sw, sh = max(MULTIPLE, round(ww * scale)), max(MULTIPLE, round(wh * scale))
            small = np.asarray(Image.fromarray(window).resize((sw, sh), Image.Resampling.LANCZOS))
            # a hole pixel anywhere in a small cell makes the cell a hole: the fill covers the whole hole
            small_mask = np.asarray(Image.fromarray(wmask * 255).resize((sw, sh), Image.Resampling.BOX)) > 0
            filled = self.fill_window(small, small_mask.astype(np.uint8))
            filled = np.asarray(Image.fromarray(filled).resize((ww, wh), Image.Resampling.BICUBIC))
        else:
            filled = self.fill_window(window, wmask)
        out = image.copy()
        region = out[wy0:wy1, wx0:wx1]
        region[wmask > 0] = filled[wmask > 0]
        return out, {"window": [wx0, wy0, ww, wh], "work_size": [int(round(ww * scale)), int(round(wh * scale))]}


@functools.lru_cache(maxsize=2)
def inpainter(weights_dir: Path = WEIGHTS_DIR) -> Inpainter:
    return Inpainter(weights_dir)
