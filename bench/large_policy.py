"""The large-image policy judged by accuracy and time: resize vs tile on full-size forgeries.

    python -m bench.large_policy [--benchmark CSV] [--count 16] [--repeats 3]

Accuracy: per-image pixel AUC and F1 at the shipped operating point (threshold and cut) on full-size camera splices
from the held-out camera files (bench.large_forgeries; made in a temporary folder unless
--benchmark names one). Time: the engine alone (decode excluded) on a 12 MP (4000x3000)
photo, p50 over --repeats runs. Each policy runs in this process through the service's own
Engine, with the shipped weights and precision, one after the other on the same rows.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SIZES, test_photo
from service.decode import decode_image
from service.engine import Engine
from service.evaluation.benchmark import read_benchmark, read_mask
from service.settings import Settings
from spancore.scoring import Confusion, decision_mask, roc_auc

MP = 1_000_000
POLICIES: dict[str, dict] = {
    "resize to 1 MP": {"large_image_policy": "resize", "max_working_pixels": 1024 * 1024},
    "resize to 2 MP": {"large_image_policy": "resize", "max_working_pixels": 2 * MP},
    "resize to 4 MP (the default)": {"large_image_policy": "resize", "max_working_pixels": 4 * MP},
    "tile 1024, downscaled to 2 MP first": {"large_image_policy": "tile", "max_tiled_pixels": 2 * MP},
    "tile 1024, downscaled to 3 MP first": {"large_image_policy": "tile", "max_tiled_pixels": 3 * MP},
    "tile 1024, downscaled to 4 MP first": {"large_image_policy": "tile", "max_tiled_pixels": 4 * MP},
    "tile 1024, native resolution (up to 16 MP)": {"large_image_policy": "tile", "max_tiled_pixels": 16 * MP},
}


def measure(options: dict, rows, photo_12mp: np.ndarray, repeats: int) -> dict:
    engine = Engine.from_settings(Settings(providers=["CPUExecutionProvider"], **options))
    try:
        aucs, f1s = [], []
        for row in rows:
            rgb = decode_image(row.image.read_bytes(), max_pixels=10**9).rgb
            truth = read_mask(row.mask, (rgb.shape[1], rgb.shape[0]))
            heatmap = engine.predict(rgb)
            aucs.append(roc_auc(heatmap, truth))
            f1s.append(Confusion.of(decision_mask(heatmap, engine.threshold, engine.relative_cut), truth).f1() or 0.0)
        engine.predict(photo_12mp)  # warm-up at this shape
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            engine.predict(photo_12mp)
            times.append(time.perf_counter() - started)
        return {"aucs": aucs, "auc": float(np.mean(aucs)), "auc_sd": float(np.std(aucs)), "f1": float(np.mean(f1s)),
                "p50_12mp_s": statistics.median(times), "precision": engine.manifest.precision}
    finally:
        engine.close(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, help="a benchmark CSV of large forgeries (default: make one)")
    parser.add_argument("--count", type=int, default=16, help="forgeries to make when --benchmark is not given")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs on the 12 MP photo per policy")
    parser.add_argument("--only", default="", help="run only the policies whose name contains one of these "
                        "comma-separated texts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        csv_path = args.benchmark
        if csv_path is None:
            from bench.large_forgeries import make  # torch side (models.synthesis): only when making rows
            csv_path = make(Path(scratch) / "large", args.count)
        rows = [row for row in read_benchmark(csv_path) if row.mask is not None]
        photo = decode_image(test_photo(SIZES["12mp"]), max_pixels=10**9).rgb
        sizes = sorted(round(int(r.fields["width"]) * int(r.fields["height"]) / MP, 1) for r in rows)
        print(f"{len(rows)} forgeries from held-out cameras, {sizes[0]}-{sizes[-1]} MP; time on one 12 MP photo\n")
        # Paired against the first policy run: the same photos, so the per-photo difference
        # says more than two means whose spread over photos is ~0.15.
        print("| policy | pixel AUC (mean ± sd) | F1 at threshold | engine p50, 12 MP | Δ AUC vs first, per photo (photos better) |")
        print("|---|---|---|---|---|")
        first = None
        for name, options in POLICIES.items():
            if not any(text in name for text in args.only.split(",")):
                continue
            r = measure(options, rows, photo, args.repeats)
            first = first or r
            diff = np.subtract(r["aucs"], first["aucs"])
            paired = (f"{diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f} s.e. ({int((diff > 0).sum())}/{len(diff)})"
                      if r is not first else "—")
            print(f"| {name} | {r['auc']:.3f} ± {r['auc_sd']:.3f} | {r['f1']:.3f} | {r['p50_12mp_s']:.2f} s ({r['precision']}) |"
                  f" {paired} |", flush=True)


if __name__ == "__main__":
    main()
