"""Benchmarks built for the evaluation tests from real BSDS photos (imported as `evaluation_data`)."""
from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image



ROOT = Path(__file__).resolve().parents[4]
SHARED = Path(os.environ.get("SPAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
BSDS_VAL = SHARED / "photos" / "bsds500" / "val"
DEV_MANIFEST = SHARED / "benchmarks" / "dev" / "manifest.csv"
SPAN = ROOT / ".venv" / "bin" / "span"
REQUIRED = ("pixel_auc", "pixel_f1_fixed", "pixel_f1_best", "pixel_iou", "pixel_mcc", "image_auc", "image_bacc", "n_images")
HEADER = ["id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license"]


def _photo(index: int) -> np.ndarray:
    files = sorted(BSDS_VAL.glob("*.jpg"))
    return np.asarray(Image.open(files[index]).convert("RGB"))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def _splice(host_index: int, donor_index: int) -> tuple[np.ndarray, np.ndarray]:
    """A real photo saved at JPEG 90 with a rectangle of another photo pasted in (the classic ELA case)."""
    host, donor = _photo(host_index), _photo(donor_index)
    height, width = min(host.shape[0], donor.shape[0]), min(host.shape[1], donor.shape[1])
    image = _jpeg(host[:height, :width].copy(), 90)
    mask = np.zeros((height, width), bool)
    mask[60:180, 100:260] = True
    image[mask] = donor[:height, :width][mask]
    return image, mask


def _write_manifest(path: Path, rows: list[dict], header=HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(row_id, image, mask="", dataset="synth", kind="splice", size=(0, 0)):
    return {"id": row_id, "image": image, "mask": mask, "dataset": dataset, "kind": kind,
            "width": size[0], "height": size[1], "tampered_fraction": 0, "license": "test"}


def _synthetic_manifest(folder: Path) -> Path:
    """Real BSDS photos: three splices with their masks in two datasets, two pristine photos."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    for number, (host, donor, dataset) in enumerate([(2, 3, "alpha"), (4, 5, "alpha"), (6, 7, "beta")]):
        image, mask = _splice(host, donor)
        Image.fromarray(image).save(folder / "images" / f"splice{number}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"splice{number}.png")
        rows.append(_row(f"splice{number}", f"images/splice{number}.png", f"masks/splice{number}.png", dataset,
                         size=(image.shape[1], image.shape[0])))
    for number, index in enumerate((8, 9)):
        photo = _jpeg(_photo(index), 90)
        Image.fromarray(photo).save(folder / "images" / f"pristine{number}.png")
        rows.append(_row(f"pristine{number}", f"images/pristine{number}.png", "", "beta", "pristine",
                         (photo.shape[1], photo.shape[0])))
    return _write_manifest(folder / "manifest.csv", rows)


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _span(*arguments: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SPAN), "evaluate", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
