"""Can the copy-move layer's findings tell a copy-move forgery from its own original, where the
map's image score cannot? Measured on synthetic pairs (BSDS500 val, never the dev set).

    python -m bench.copy_move_evidence [--pairs 120] [--seed 0] [--json out.json]
    python -m bench.copy_move_evidence --untouched      # the layer over the shared unedited photos

`--untouched` runs the layer alone over every photo of photos/cameras, urban100, sun-hays80 and
bsds500/val (340 files, none edited) and prints, per folder, how many it marks and by which
pass: each is a false positive (the layer's docstring and README quote these counts).

Each pair is one copy-move forgery (models.synthesis.copy_move: an object of the photo moved,
possibly scaled, rotated or flipped) and the same frame before the edit, both saved alike
(PNG as NoSo is, or one JPEG quality for both), so nothing but the copy tells them apart, as in
NoSo. For each photo: the shipped model's image score (the engine, as served) and the copy-move
layer's summary (service/layers/copy_move.py). Prints the image AUC of each candidate score
over the forged and pristine photos, and how often the forged one of a pair scores higher.
Needs the train extra (the synthesis) and the layers extra (OpenCV).
"""
from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from models.sources import list_photos, shared_data_dir
from models.synthesis import synthesize
from service.engine import Engine
from service.layers import copy_move
from service.layers.base import Photo
from service.settings import Settings
from spancore.scoring import image_scores, roc_auc


def saved(rgb: np.ndarray, quality: int | None) -> tuple[bytes, np.ndarray, str]:
    """The photo as a file and as decoded again: PNG for quality None, else a JPEG."""
    out = io.BytesIO()
    if quality is None:
        Image.fromarray(rgb).save(out, "PNG")
    else:
        Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    data = out.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), "PNG" if quality is None else "JPEG"


def evidence(summary: dict) -> dict[str, float]:
    """Image-level numbers from the copy-move layer's summary."""
    matches = [region["n_matches"] for region in summary["regions"]]
    votes = [shift["blocks"] for shift in summary["dense_shifts"]]
    return {
        "found": float(summary["found"]),
        "copied_fraction": float(summary["copied_fraction"]),
        "max_matches": float(max(matches, default=0)),
        "max_dense_votes": float(max(votes, default=0)),
        "n_regions": float(summary["n_regions"] + len(summary["dense_shifts"])),
    }


class PairPhoto(NamedTuple):
    pair: int
    label: int              # 1: the copy-move, 0: the same frame before the edit
    quality: int | None     # JPEG quality both were saved at; None: PNG
    data: bytes             # the file
    rgb: np.ndarray         # the file decoded again
    format: str
    mask: np.ndarray | None  # the copy's truth (label 1 only)


def copy_move_pairs(pairs: int, seed: int, size: int) -> Iterator[PairPhoto]:
    """Both photos of each synthetic pair, the copy-move first, saved alike."""
    photos = list_photos("val")
    for index in range(pairs):
        rng = np.random.default_rng([seed, index])
        forgery = synthesize(rng, photos, size, "copy-move", post=None)
        quality = None if rng.random() < 0.5 else int(rng.integers(70, 100))
        for label, rgb, mask in ((1, forgery.image, forgery.mask), (0, forgery.original, None)):
            yield PairPhoto(index, label, quality, *saved(rgb, quality), mask)


def measure(pairs: int, seed: int, size: int, progress=print) -> dict:
    engine = Engine.from_settings(Settings())
    rows = []
    started = time.perf_counter()
    for photo in copy_move_pairs(pairs, seed, size):
        heat = engine.predict(photo.rgb)
        result = copy_move.analyse(Photo(data=photo.data, rgb=photo.rgb, format=photo.format))
        rows.append({"pair": photo.pair, "label": photo.label, "quality": photo.quality,
                     "model": float(image_scores(heat[None])[0]), **evidence(result.summary)})
        if photo.label == 0 and (photo.pair + 1) % 20 == 0:
            progress(f"{photo.pair + 1}/{pairs} pairs, {time.perf_counter() - started:.0f} s")
    engine.close()
    return {"rows": rows, "threshold": engine.threshold}


def summarise(rows: list[dict], threshold: float) -> dict[str, dict]:
    labels = np.array([r["label"] for r in rows])
    model = np.array([r["model"] for r in rows])
    candidates = {name: np.array([r[name] for r in rows]) for name in
                  ("model", "found", "copied_fraction", "max_matches", "max_dense_votes", "n_regions")}
    # Fusions: the map's score unless the layer found a copy, then at least the threshold
    # (the finding alone says "manipulated"), ordered within by the map.
    found = candidates["found"] > 0
    candidates["model, raised to the threshold when a copy is found"] = np.where(found, np.maximum(model, threshold), model)
    candidates["model + found"] = model + found
    out = {}
    for name, score in candidates.items():
        forged = score[labels == 1]
        pristine = score[labels == 0]
        out[name] = {"image_auc": roc_auc(score, labels.astype(bool)),
                     "forged_above_own_original": float(np.mean(forged > pristine)),
                     "forged_mean": float(forged.mean()), "pristine_mean": float(pristine.mean())}
    out["found"].update({"true_positive_rate": float(found[labels == 1].mean()),
                         "false_positive_rate": float(found[labels == 0].mean())})
    return out


UNTOUCHED = ("cameras", "urban100", "sun-hays80", "bsds500/val")


def untouched_scan(progress=print) -> dict[str, dict]:
    """Per folder of unedited shared photos: how many the copy-move layer marks, and by which pass."""
    root = shared_data_dir() / "photos"
    counts = {}
    for folder in UNTOUCHED:
        found = []
        paths = sorted((root / folder).glob("*.jpg"))
        for path in paths:
            data = path.read_bytes()
            rgb = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
            summary = copy_move.analyse(Photo(data=data, rgb=rgb, format="JPEG")).summary
            if summary["found"]:
                found.append({"file": path.name,
                              "keypoints": [r["residual_correlation"] for r in summary["regions"]],
                              "dense": [d["residual_correlation"] for d in summary["dense_shifts"]]})
        counts[folder] = {"photos": len(paths), "marked": len(found), "found": found}
        progress(f"{folder}: {len(found)} of {counts[folder]['photos']} marked {found}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=320, help="frame side (BSDS photos are 481x321)")
    parser.add_argument("--untouched", action="store_true", help="scan the shared unedited photos instead")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.untouched:
        counts = untouched_scan()
        if args.json:
            args.json.write_text(json.dumps(counts, indent=2))
        print(f"marked {sum(c['marked'] for c in counts.values())} of {sum(c['photos'] for c in counts.values())}")
        return 0
    measured = measure(args.pairs, args.seed, args.size)
    table = summarise(measured["rows"], measured["threshold"])
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **measured, "summary": table},
                                        indent=2))
    for name, row in table.items():
        print(f"{name:58s} image AUC {row['image_auc']:.3f}  forged > own original {row['forged_above_own_original']:.2f}"
              + (f"  TPR {row['true_positive_rate']:.2f} FPR {row['false_positive_rate']:.2f}" if "true_positive_rate" in row else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
