"""Full-size forgeries from the held-out camera files, as a benchmark CSV `span evaluate` reads.

    python -m bench.large_forgeries --out /tmp/large --count 12
    span evaluate /tmp/large/benchmark.csv                        # SPAN_LARGE_IMAGE_POLICY=resize|tile

Each row: a held-out camera photo (models.synthesis.list_cameras('held-out'), never seen in
training) at its native size, a region of another held-out camera's photo pasted at the same
place (no resampling, as a camera splice in training), saved as a JPEG at quality 85-95 on the
host's grid. The photos are 1-15 MP: the case where the engine's large-image policy (resize or
tile) decides whether the pixel-level traces survive.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from models.sources import list_cameras, load_photo_full
from models.synthesis import camera_splice, sample_rng

FIELDS = ("id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license")


def make(out: Path, count: int, seed: int = 0) -> Path:
    cameras = list_cameras("held-out")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        rng = sample_rng(seed, i)
        a, b = rng.choice(len(cameras), size=2, replace=False)
        host = load_photo_full(cameras[int(a)].path)
        donor = load_photo_full(cameras[int(b)].path)
        h, w = host.shape[:2]
        # the donor covers the host frame: tiled by reflection where it is smaller (still no resampling)
        reps = (-(-h // donor.shape[0]), -(-w // donor.shape[1]), 1)
        donor = np.tile(donor, reps)[:h, :w]
        image, mask = camera_splice(rng, host, np.ascontiguousarray(donor))
        stem = f"large-{i:03d}"
        Image.fromarray(image).save(out / "images" / f"{stem}.jpg", quality=int(rng.integers(85, 96)))
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"{stem}.png")
        rows.append({"id": stem, "image": f"images/{stem}.jpg", "mask": f"masks/{stem}.png",
                     "dataset": "large-camera", "kind": "splice", "width": w, "height": h,
                     "tampered_fraction": round(float(mask.mean()), 4),
                     "license": "metadata-extractor sample images (any use)"})
        print(stem, f"{w}x{h}", cameras[int(a)].path.name, "<-", cameras[int(b)].path.name, flush=True)
    path = out / "benchmark.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make(args.out, args.count, args.seed))
