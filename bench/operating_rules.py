"""Decision rules for the pixel mask, compared on synthetic validation (never on dev).

    python -m bench.operating_rules weights/span.pt --config models/configs/cues-long.json --samples 256

The service marks a pixel tampered when the map is at or above one global threshold (the
manifest's, chosen by models.calibrate). A map whose scale drifts between photos (real
forgeries give lower values than synthetic ones) might be better cut relative to its own
peak. This scores, on the forgeries models.calibrate draws (BSDS500 val, the run's recipe,
the same seed), the best of each family by mean per-image F1 over forged samples, and what
each costs on the pristine ones (share of pristine samples with any pixel marked, and the
mean marked fraction):

- global:    map >= t
- relative:  map >= r * max(map)
- combined:  map >= max(t, r * max(map))
- capped:    map >= max(t, the map's (1 - f) quantile): at most a fraction f of the photo is
             marked. Synthetic and real forgeries alike cover a few per cent of the photo
             (median 4.5 % in the synthetic validation set, 3-6 % per dev dataset), while a
             global threshold marks 20-40 % of some real photos.

--large N scores the rules on N held-out cameras' large crops as well (models.calibrate's
second set), and ranks each family by the mean of the two sets' F1, as calibrate does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.calibrate import calibration_maps, large_calibration_maps
from models.span import Span
from models.train import TrainConfig
from spancore.scoring import Confusion

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
CAPS = (0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5)


def score(heat: np.ndarray, truth: np.ndarray, rule, forged: list[int], pristine: list[int]) -> dict:
    masks = [rule(h) for h in heat]
    return {
        "f1": float(np.mean([Confusion.of(masks[i], truth[i]).f1() or 0.0 for i in forged])),
        "pristine_any": float(np.mean([masks[i].any() for i in pristine])) if pristine else None,
        "pristine_fraction": float(np.mean([masks[i].mean() for i in pristine])) if pristine else None,
    }


def capped(h: np.ndarray, t: float, f: float) -> np.ndarray:
    return h >= max(t, float(np.quantile(h, 1.0 - f)))


def candidates() -> dict:
    return {
        "global": [({"t": t}, lambda h, t=t: h >= t) for t in GRID],
        "relative": [({"r": r}, lambda h, r=r: h >= r * h.max()) for r in GRID],
        "combined": [({"t": t, "r": r}, lambda h, t=t, r=r: h >= max(t, r * h.max()))
                     for t in GRID[:8] for r in GRID],
        "capped": [({"t": t, "f": f}, lambda h, t=t, f=f: capped(h, t, f)) for t in GRID[:8] for f in CAPS],
    }


def families(sets: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Each family's best rule by the mean over the sets of the per-image F1 on forged samples."""
    best = {}
    for family, rules in candidates().items():
        scored = []
        for params, rule in rules:
            per_set = []
            for heat, truth in sets:
                forged = [i for i in range(len(truth)) if truth[i].any()]
                pristine = [i for i in range(len(truth)) if not truth[i].any()]
                per_set.append(score(heat, truth, rule, forged, pristine))
            scored.append({**params, "f1": float(np.mean([s["f1"] for s in per_set])), "sets": per_set})
        best[family] = max(scored, key=lambda s: s["f1"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the run's training config (recipe, seed)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--large", type=int, default=0, help="also this many held-out cameras' large crops")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.load(args.config)
    span = Span.from_checkpoint(torch.load(args.checkpoint, map_location="cpu", weights_only=False))
    heat, truth, _ = calibration_maps(span, config, args.samples)
    sets = [(heat, truth)]
    if args.large:
        large_heat, large_truth, _ = large_calibration_maps(span, config, args.large)
        sets.append((large_heat, large_truth))
    print(json.dumps({"checkpoint": str(args.checkpoint), "samples": args.samples, "large": args.large,
                      "forged": [int(t.reshape(len(t), -1).any(1).sum()) for _, t in sets], **families(sets)}, indent=1))


if __name__ == "__main__":
    main()
