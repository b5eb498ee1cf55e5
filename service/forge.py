"""`span forge`: removal forgeries of a user's own photos with the shipped inpainting generator.

Torch-free: the generator runs from weights/inpaint/deepfill.onnx on ONNX Runtime, after its
sha256 is checked against weights/inpaint/manifest.json. One photo and one hole give
``forged.png`` (the inpainted image), ``mask.png`` (the exact truth: white where pixels were
replaced, nothing else changed) and ``forge.json`` (what was done). ``--random N`` over a
folder draws N holes per photo and writes a benchmark folder that `span evaluate` reads
(manifest.csv with id,image,mask,dataset,kind,width,height,tampered_fraction,license).

The fill itself (context window, working size, padding) is spancore/inpaint.py.

Everything is written into a temporary folder beside ``--out`` and renamed into place at the
end, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import csv
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

from service.decode import InputError, decode_image
from spancore import holes
from spancore.inpaint import WEIGHTS_DIR, Inpainter, InpainterError, inpainter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif"}
MAX_PIXELS = 100_000_000
MANIFEST_COLUMNS = ("id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license")


class ForgeError(Exception):
    """Bad input or a missing model: the message is the one line the user sees."""


def _engine(weights_dir: Path) -> Inpainter:
    try:
        return inpainter(weights_dir)
    except InpainterError as error:
        raise ForgeError(str(error)) from None


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
    engine = _engine(weights_dir)
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
    engine = _engine(weights_dir)
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
