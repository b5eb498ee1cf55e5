"""Does the operating threshold depend on the photo's size? The served map, on synthetic forgeries
at the calibration's patch size and at the size photos are served (never the dev set).

    python -m bench.threshold_by_size [--samples 96] [--json out.json]

models.calibrate picks the threshold on 256-pixel BSDS500 val patches. The network resizes its
features to a fixed working grid (128 x 128 for the shipped weights), so one grid cell covers
2 x 2 pixels of such a patch and 8 x 8 of a 1 MP photo: the same forgery may give a map of
another contrast at another size. Here the engine (as served, ORT fp32) maps forgeries of the
training recipe's edit kinds drawn from
- BSDS500 val at 256 px (the calibration's own size) and 320 px (the whole short side), and
- the held-out camera files (models.sources.list_cameras('held-out'), never trained on) at
  512 and 1024 px, native crops;
and prints, per source, the threshold with the best mean per-image F1 (the calibration's
criterion), that F1, and the F1 at the manifest's threshold.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from models.losses import operating_point
from models.sources import list_cameras, list_photos
from models.synthesis import PostProcessing, Recipe, synthesize
from service.engine import Engine
from service.settings import Settings
from spancore.scoring import Confusion, roc_auc

# The training recipe's own edit kinds (models/configs/cues-camera.json) that draw from a photo
# list; the camera kinds draw from the camera split themselves. Pristine photos are mapped too,
# as in calibration, but only forged ones enter the per-image F1.
KINDS = {"pristine": 0.2, "splice": 0.25, "copy-move": 0.2, "removal": 0.15, "retouch": 0.2}
SOURCES = {"bsds-val@256": ("val", 256), "bsds-val@320": ("val", 320),
           "held-out-cameras@512": ("held-out", 512), "held-out-cameras@1024": ("held-out", 1024)}


def maps_of(engine: Engine, source: str, size: int, samples: int, seed: int) -> tuple[list, list]:
    photos = list_photos("val") if source == "val" else list_cameras("held-out")
    names, weights = list(KINDS), np.array(list(KINDS.values()))
    heat, truth = [], []
    for index in range(samples):
        rng = np.random.default_rng([seed, index])
        kind = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        forgery = synthesize(rng, photos, size, kind, PostProcessing(), Recipe(splice_history=True, p_edge=0.5))
        heat.append(engine.predict(forgery.image))
        truth.append(forgery.mask >= 0.5)
    return heat, truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--seed", type=int, default=40_000)
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    engine = Engine.from_settings(Settings(precision="fp32"))
    results = {"threshold_shipped": engine.threshold, "samples": args.samples, "seed": args.seed, "sources": {}}
    for name in args.sources:
        started = time.perf_counter()
        heat, truth = maps_of(engine, *SOURCES[name], args.samples, args.seed)
        threshold, f1 = operating_point(heat, truth, per_image=True)
        forged = [i for i, t in enumerate(truth) if t.any()]
        at_shipped = float(np.mean([Confusion.of(heat[i] >= float(engine.threshold), truth[i]).f1() or 0.0
                                    for i in forged]))  # the threshold alone: the question is its size-dependence
        aucs = [roc_auc(heat[i].ravel(), truth[i].ravel()) for i in forged if not truth[i].all()]
        results["sources"][name] = {
            "best_threshold": threshold, "f1_at_best": round(f1, 4), "f1_at_shipped": round(at_shipped, 4),
            "pixel_auc": round(float(np.mean(aucs)), 4), "forged": len(forged),
            "median_map_pristine": round(float(np.median([np.median(heat[i]) for i, t in enumerate(truth) if not t.any()] or [np.nan])), 4),
            "seconds": round(time.perf_counter() - started, 1)}
        print(name, results["sources"][name], flush=True)
    engine.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
