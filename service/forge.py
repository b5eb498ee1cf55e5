"""`span forge`: removal forgeries of a user's own photos with the shipped inpainting generator.

Torch-free: the generator runs from weights/inpaint/deepfill.onnx on ONNX Runtime, after its
sha256 is checked against weights/inpaint/manifest.json. One photo and one hole give
``forged.png`` (the inpainted image), ``mask.png`` (the exact truth: white where pixels were
replaced, nothing else changed) and ``forge.json`` (what was done). ``--random N`` over a
folder draws N holes per photo and writes a benchmark folder that `span evaluate` reads
(manifest.csv with id,image,mask,dataset,kind,width,height,tampered_fraction,license).

The generator was trained on 128-px crops: a hole is filled inside a context window around it
(the hole's box grown by its own size on every side), scaled so the window's long side is at
most WORK_SIDE, padded to a multiple of 8, inpainted, scaled back, and pasted into the hole only.

Everything is written into a temporary folder beside ``--out`` and renamed into place at the
end, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service import holes
from service.decode import InputError, decode_image
from service.manifest import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights" / "inpaint"
ONNX_FILE = "deepfill.onnx"
WORK_SIDE = 256          # longest side of the window the generator sees (trained at 128, fine up to ~256)
CONTEXT = 1.0            # window = hole box grown by CONTEXT × its size on each side
MULTIPLE = 8
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"}
MAX_PIXELS = 100_000_000
MANIFEST_COLUMNS = ("id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license")


class ForgeError(Exception):
    """Bad input or a missing model: the message is the one line the user sees."""


# ----------------------------------------------------------------------------- the generator

class Inpainter:
    """The ONNX generator (sha256-checked), one session per process."""

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, threads: int = 1):
        import onnxruntime as ort

        manifest_path = weights_dir / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
            expected = manifest["files"][ONNX_FILE]["sha256"]
        except (OSError, ValueError, KeyError) as error:
            raise ForgeError(f"no usable inpainting manifest at {manifest_path} ({error})") from None
        path = weights_dir / ONNX_FILE
        if not path.is_file():
            raise ForgeError(f"inpainting model missing: {path}")
        actual = sha256_file(path)
        if actual != expected:
            raise ForgeError(f"{path} has sha256 {actual[:12]}, the manifest says {expected[:12]}: refusing to run it")
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


# ----------------------------------------------------------------------------- inputs

def read_image(path: Path) -> np.ndarray:
    """RGB uint8 as displayed (EXIF orientation applied), or ForgeError with the reason."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ForgeError(f"cannot read image {path}: {error.strerror or error}") from None
    try:
        return decode_image(data, max_pixels=MAX_PIXELS, min_side=16).rgb
    except InputError as error:
        raise ForgeError(f"{path}: {error.message}") from None


def is_shape_spec(text: str) -> bool:
    return text == "random" or text.startswith(("rect:", "ellipse:"))


def hole_of(spec: str, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The hole (uint8, 1 = replace) from a mask file or a shape spec, checked: same size, not empty, not everything."""
    if is_shape_spec(spec):
        try:
            mask = holes.parse_shape(spec, height, width, rng)
        except holes.ShapeError as error:
            raise ForgeError(str(error)) from None
        source = spec
    else:
        path = Path(spec)
        if not path.is_file():
            raise ForgeError(f"--mask {spec!r} is neither a mask file nor a shape spec "
                             "(rect:x,y,w,h, ellipse:cx,cy,rx,ry, random)")
        try:
            with Image.open(path) as im:
                grey = np.asarray(im.convert("L"))
        except Exception as error:  # noqa: BLE001  any undecodable file is the same user error
            raise ForgeError(f"mask {path} is not a readable image ({error})") from None
        if grey.shape != (height, width):
            raise ForgeError(f"mask {path} is {grey.shape[1]}x{grey.shape[0]} but the image is {width}x{height}")
        mask = (grey > 127).astype(np.uint8)
        source = str(path)
    if not mask.any():
        raise ForgeError(f"the mask {spec!r} is empty: nothing to remove")
    if mask.all():
        raise ForgeError(f"the mask {spec!r} covers the whole image: nothing left to fill from")
    return mask, source


# ----------------------------------------------------------------------------- outputs

@dataclass
class Forged:
    image: np.ndarray
    mask: np.ndarray
    record: dict[str, Any]


def forge_one(image: np.ndarray, mask: np.ndarray, engine: Inpainter) -> Forged:
    started = time.perf_counter()
    filled, details = engine.fill(image, mask)
    changed = np.any(filled != image, axis=2)
    if (changed & (mask == 0)).any():  # the truth mask must be exact: never ship a forgery that breaks it
        raise RuntimeError("a pixel outside the hole changed")
    record = {
        "operation": "removal by deep inpainting (DeepFill-style generator, weights/inpaint)",
        "model_sha256": engine.sha256,
        "width": int(image.shape[1]), "height": int(image.shape[0]),
        "hole_pixels": int(mask.sum()), "tampered_fraction": round(float(mask.mean()), 6),
        **details, "seconds": round(time.perf_counter() - started, 3),
    }
    return Forged(filled, mask, record)


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG")


class _Staging:
    """A temporary folder beside ``out`` renamed to ``out`` on success, removed on failure."""

    def __init__(self, out: Path):
        self.out = out

    def __enter__(self) -> Path:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ForgeError(f"--out {self.out} exists and is not empty: choose a new folder")
        parent = self.out.resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=parent))
        except OSError as error:
            raise ForgeError(f"cannot write under {parent}: {error.strerror or error}") from None
        return self.tmp

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():
            self.out.rmdir()  # empty (checked on entry)
        os.replace(self.tmp, self.out)


def forge_image(image_path: Path, mask_spec: str, out: Path, seed: int = 0,
                weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """One photo, one hole -> out/{forged.png, mask.png, forge.json}. Returns the record."""
    image = read_image(image_path)
    mask, source = hole_of(mask_spec, image.shape[0], image.shape[1], np.random.default_rng(seed))
    engine = inpainter(weights_dir)
    with _Staging(out) as tmp:
        result = forge_one(image, mask, engine)
        record = {"source": str(image_path), "mask_source": source, "seed": seed,
                  "outputs": {"image": "forged.png", "mask": "mask.png"}, **result.record}
        _save_png(result.image, tmp / "forged.png")
        _save_png(result.mask * 255, tmp / "mask.png")
        (tmp / "forge.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def forge_folder(folder: Path, n: int, out: Path, seed: int = 0, license_note: str = "as the source photos",
                 weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """N random holes per photo of ``folder`` -> out/{images/,masks/,manifest.csv,forge.json}."""
    if n < 1:
        raise ForgeError(f"--random must be at least 1 (got {n})")
    if not folder.is_dir():
        raise ForgeError(f"{folder} is not a folder (--random N works over a folder of photos)")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ForgeError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    engine = inpainter(weights_dir)
    rng = np.random.default_rng(seed)
    rows, records = [], []
    with _Staging(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for path in photos:  # one bad photo aborts the lot: the staging folder is removed, nothing is left
            image = read_image(path)
            for i in range(n):
                mask, style = holes.random_hole(rng, image.shape[0], image.shape[1])
                result = forge_one(image, mask, engine)
                row_id = f"{path.stem}__deep{i}"
                _save_png(result.image, tmp / "images" / f"{row_id}.png")
                _save_png(result.mask * 255, tmp / "masks" / f"{row_id}.png")
                rows.append({"id": row_id, "image": f"images/{row_id}.png", "mask": f"masks/{row_id}.png",
                             "dataset": "forge", "kind": "removal", "width": image.shape[1],
                             "height": image.shape[0], "tampered_fraction": round(float(mask.mean()), 4),
                             "license": license_note})
                records.append({"id": row_id, "source": str(path), "hole": style, **result.record})
        with open(tmp / "manifest.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        summary = {"folder": str(folder), "per_photo": n, "seed": seed, "rows": len(rows), "forgeries": records}
        (tmp / "forge.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
