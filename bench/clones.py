"""How well does spancore.clones find copy-moves, and how often does it fire on untouched photos?
Measured on synthetic pairs and the shared unedited photos, never on the dev set.

    python -m bench.clones --pairs 160 --seed 1 [--model] [--cache DIR] [--json out.json]
    python -m bench.clones --untouched [--json out.json]

Pairs: one copy-move forgery and the same frame before the edit, both saved alike (PNG, or one
JPEG quality 70-100 for both), so only the copy tells them apart, as in NoSo. Frames, a third
each: a BSDS500 val photo (481x321, with its segmentation), a 1024x768 crop of a held-out camera
file at native resolution, or a held-out camera file resized to 1024x768 (as NoSo's photos
are). Edits, half each:
- translation: a region (BSDS segment or random shape, 0.3-10 % of the frame) copied by a
  whole-pixel shift at least 16 px long, hard or feathered edges;
- transformed: models.synthesis.copy_move (scaled, possibly rotated or flipped), which a
  translation search cannot find: it is here to say so.
Prints the detection rate per edit, format and frame, the rate on the originals, the image
AUC of find_clones' confidence over forged and original photos, and the pixel F1 of its mask;
with `--model`, the image AUC of the served model's score alone and of the answer's score
(the clones folded in, spancore.clones.fold_in).

`--untouched`: find_clones over every photo of photos/cameras (at native size: binned where
above MAX_PIXELS), urban100, sun-hays80 and bsds500/val (340 files, none edited); each find is
a false positive.
Needs the train extra (the synthesis; OpenCV).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bench.copy_move_evidence import UNTOUCHED, saved
from spancore.clones import find_clones, fold_in
from spancore.scoring import image_score, roc_auc

FRAMES = ("bsds", "camera-native", "camera-resized")


def _frame(rng, bsds, cameras) -> tuple[str, np.ndarray, np.ndarray | None]:
    import cv2

    from models.sources import load_photo, load_photo_full, load_segments
    source = FRAMES[int(rng.integers(3))]
    if source == "bsds":
        photo = bsds[int(rng.integers(len(bsds)))]
        segments = load_segments(photo.segments) if photo.segments is not None and photo.segments.exists() else None
        return source, load_photo(photo.path), segments
    image = load_photo_full(cameras[int(rng.integers(len(cameras)))].path)
    if image.shape[0] > image.shape[1]:
        image = np.ascontiguousarray(np.rot90(image))
    h, w = image.shape[:2]
    if source == "camera-native":
        y, x = int(rng.integers(0, h - 768 + 1)), int(rng.integers(0, w - 1024 + 1))
        return source, np.ascontiguousarray(image[y:y + 768, x:x + 1024]), None
    scale = max(1024 / w, 768 / h)
    image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return source, np.ascontiguousarray(image[:768, :1024]), None


def translated_copy(rng, image: np.ndarray, segments: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A region copied by a whole-pixel shift (>= 16 px): (forgery, truth of the copy)."""
    from models.shapes import alpha_of, blend, region
    h, w = image.shape[:2]
    for _ in range(20):
        source = region(rng, segments, h, w, 0.003, 0.1).astype(np.float32)
        ys, xs = np.nonzero(source > 0.5)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        dy, dx = int(rng.integers(-y0, h - y1 + 1)), int(rng.integers(-x0, w - x1 + 1))
        if math.hypot(dy, dx) < 16:
            continue
        moved = np.zeros_like(source)
        moved[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = source[y0:y1, x0:x1]
        layer = image.copy()
        layer[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = image[y0:y1, x0:x1]
        alpha = alpha_of(rng, moved)
        return blend(image, layer, alpha), alpha >= 0.5
    return None


def make_pairs(count: int, seed: int, cache: Path | None = None):
    """Yield (meta, forgery, original, truth) for each pair, from `cache` when it holds it."""
    from models.sources import list_cameras, list_photos
    from models.synthesis import copy_move
    bsds, cameras = list_photos("val"), list_cameras("held-out")
    for index in range(count):
        path = cache / f"{seed}_{index}.npz" if cache else None
        if path is not None and path.exists():
            stored = np.load(path, allow_pickle=False)
            yield json.loads(str(stored["meta"])), stored["forgery"], stored["original"], stored["truth"]
            continue
        rng = np.random.default_rng([seed, index])
        source, image, segments = _frame(rng, bsds, cameras)
        edit = "translation" if rng.random() < 0.5 else "transformed"
        made = translated_copy(rng, image, segments) if edit == "translation" else copy_move(rng, image, segments)
        if made is None:
            continue
        forgery, truth = made[0], np.asarray(made[1]) >= 0.5
        quality = None if rng.random() < 0.5 else int(rng.integers(70, 101))
        meta = {"pair": index, "frame": source, "edit": edit, "quality": quality, "truth_fraction": float(truth.mean())}
        forgery, original = saved(forgery, quality)[1], saved(image, quality)[1]  # as decoded again
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, meta=json.dumps(meta), forgery=forgery, original=original, truth=truth)
        yield meta, forgery, original, truth


def measure_pairs(count: int, seed: int, cache: Path | None, with_model: bool = False, progress=print) -> list[dict]:
    """find_clones on both photos of each pair; with_model: also the served model's image score,
    alone and with the clones folded in (the answer's score)."""
    engine = None
    if with_model:
        from service.engine import Engine
        from service.settings import Settings
        engine = Engine.from_settings(Settings())
    rows = []
    started = time.perf_counter()
    for meta, forgery, original, truth in make_pairs(count, seed, cache):
        for label, rgb in ((1, forgery), (0, original)):
            began = time.perf_counter()
            result = find_clones(rgb)
            row = {**meta, "label": label, "ms": (time.perf_counter() - began) * 1000, "found": result.found,
                   "confidence": result.confidence, "clones": [clone.as_json() for clone in result.clones]}
            if engine is not None:
                heatmap = engine.predict(rgb)
                row["model"] = image_score(heatmap)
                row["served"] = fold_in(heatmap, row["model"], result)[1]
            if label:
                marked = result.mask
                hits = float(np.count_nonzero(marked & truth))
                row["f1"] = 2 * hits / max(1.0, float(marked.sum() + truth.sum()))
            rows.append(row)
        if (meta["pair"] + 1) % 20 == 0:
            progress(f"{meta['pair'] + 1}/{count} pairs, {time.perf_counter() - started:.0f} s")
    if engine is not None:
        engine.close()
    return rows


def summarise_pairs(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        fmt = "png" if row["quality"] is None else ("jpeg>=90" if row["quality"] >= 90 else "jpeg<90")
        kind = "forged" if row["label"] else "original"
        for key in (f"{kind} {row['edit']}", f"{kind} {row['edit']} {fmt}", f"{kind} {row['edit']} {row['frame']}"):
            groups[key].append(row)
    table = {key: {"n": len(group), "found": float(np.mean([r["found"] for r in group]))}
             for key, group in sorted(groups.items())}
    labels = np.array([row["label"] for row in rows], bool)
    confidence = np.array([row["confidence"] for row in rows])
    translation = np.array([row["edit"] == "translation" for row in rows])
    scored = {}
    if "model" in rows[0]:
        for name in ("model", "served"):
            values = np.array([row[name] for row in rows])
            scored[f"{name}_image_auc_all"] = roc_auc(values, labels)
            scored[f"{name}_image_auc_translation"] = roc_auc(values[translation], labels[translation])
            scored[f"{name}_image_auc_transformed"] = roc_auc(values[~translation], labels[~translation])
    return {
        "table": table,
        **scored,
        "image_auc_all": roc_auc(confidence, labels),
        "image_auc_translation": roc_auc(confidence[translation], labels[translation]),
        "pixel_f1_translation": float(np.mean([r["f1"] for r in rows if r["label"] and r["edit"] == "translation"])),
        "originals_found": float(np.mean([r["found"] for r in rows if not r["label"]])),
        "ms_median": float(np.median([r["ms"] for r in rows])),
    }


def untouched_scan(folders=UNTOUCHED, progress=print) -> dict:
    from models.sources import shared_data_dir
    root = shared_data_dir() / "photos"
    out = {}
    for folder in folders:
        paths = sorted((root / folder).glob("*.jpg"))
        found, times = [], []
        for path in paths:
            rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
            began = time.perf_counter()
            result = find_clones(rgb)
            times.append((time.perf_counter() - began) * 1000)
            if result.found:
                found.append({"file": path.name, **result.as_json()})
        out[folder] = {"photos": len(paths), "found": len(found), "finds": found, "ms_median": float(np.median(times))}
        progress(f"{folder}: {len(found)} of {len(paths)} photos with a clone {[f['file'] for f in found]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=160)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="keep the generated pairs here (.npz) and reuse them")
    parser.add_argument("--model", action="store_true", help="also the served model's image score, alone and with "
                        "the clones folded in (the weights in SPAN_MODEL_DIR)")
    parser.add_argument("--untouched", action="store_true", help="scan the shared unedited photos instead")
    parser.add_argument("--folders", nargs="+", default=list(UNTOUCHED), help="--untouched: these folders of photos/")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.untouched:
        result = untouched_scan(args.folders)
        total = sum(folder["photos"] for folder in result.values())
        print(f"clones found in {sum(folder['found'] for folder in result.values())} of {total} untouched photos")
    else:
        rows = measure_pairs(args.pairs, args.seed, args.cache, args.model)
        result = {"rows": rows, "summary": summarise_pairs(rows)}
        for key, row in result["summary"]["table"].items():
            print(f"{key:42s} n {row['n']:3d}  found {row['found']:.2f}")
        print({k: round(v, 4) for k, v in result["summary"].items() if k != "table"})
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
