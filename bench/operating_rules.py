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
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.calibrate import calibration_maps
from models.span import Span
from models.train import TrainConfig
from spancore.scoring import Confusion

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def score(heat: np.ndarray, truth: np.ndarray, rule, forged: list[int], pristine: list[int]) -> dict:
    masks = [rule(h) for h in heat]
    return {
        "f1": float(np.mean([Confusion.of(masks[i], truth[i]).f1() or 0.0 for i in forged])),
        "pristine_any": float(np.mean([masks[i].any() for i in pristine])) if pristine else None,
        "pristine_fraction": float(np.mean([masks[i].mean() for i in pristine])) if pristine else None,
    }


def families(heat: np.ndarray, truth: np.ndarray) -> dict:
    forged = [i for i in range(len(truth)) if truth[i].any()]
    pristine = [i for i in range(len(truth)) if not truth[i].any()]
    best = {}
    candidates = {
        "global": [({"t": t}, lambda h, t=t: h >= t) for t in GRID],
        "relative": [({"r": r}, lambda h, r=r: h >= r * h.max()) for r in GRID],
        "combined": [({"t": t, "r": r}, lambda h, t=t, r=r: h >= max(t, r * h.max()))
                     for t in GRID[:8] for r in GRID],
    }
    for family, rules in candidates.items():
        scored = [({**params, **score(heat, truth, rule, forged, pristine)}) for params, rule in rules]
        best[family] = max(scored, key=lambda s: s["f1"])
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the run's training config (recipe, seed)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.load(args.config)
    span = Span.from_checkpoint(torch.load(args.checkpoint, map_location="cpu", weights_only=False))
    heat, truth, _ = calibration_maps(span, config, args.samples)
    print(json.dumps({"checkpoint": str(args.checkpoint), "samples": args.samples,
                      "forged": int(truth.reshape(len(truth), -1).any(1).sum()), **families(heat, truth)}, indent=1))


if __name__ == "__main__":
    main()
