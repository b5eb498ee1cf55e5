"""Which statistic of the map separates forged from pristine photos: image-score candidates
scored on synthetic validation forgeries (BSDS500 val, half pristine; never the dev set).

    python -m bench.image_score_candidates weights/span.pt [--samples 200] [--seed 1]

Prints the image AUC of each candidate (the service's score is the mean of the top 1 %).
Needs the train extra (torch) to synthesise the samples and run the checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from models.span import Span
from models.train import Run, TrainConfig, validation_heatmaps, validation_set
from models.train_config import REPO_ROOT
from spancore.scoring import image_scores, roc_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "models" / "configs" / "cues-long.json")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig.load(args.config)
    config.name, config.init_checkpoint = "image-score-candidates", None
    config.stage2.kind_weights = {**config.stage2.kind_weights, "pristine": 0.5}  # both classes, often
    run = Run(config, resume=True)
    span = Span.from_checkpoint(args.checkpoint).eval()
    images, cues, masks, _ = validation_set(run, span.config, args.samples, 20_000 + args.seed)
    heat, truth, _ = validation_heatmaps(span, images, masks, run, 4, cues)
    maps, truth = heat.reshape(args.samples, -1), truth.reshape(args.samples, -1).any(1)

    def top_mean(fraction: float) -> np.ndarray:
        k = max(1, math.ceil(maps.shape[1] * fraction))
        return np.sort(maps, 1)[:, -k:].mean(1)

    median = np.median(maps, 1)
    candidates = {
        "top 1 % (shipped)": image_scores(maps), "top 5 %": top_mean(0.05), "top 20 %": top_mean(0.2),
        "mean": maps.mean(1), "max": maps.max(1), "std": maps.std(1),
        "top 1 % - median": top_mean(0.01) - median, "top 5 % - median": top_mean(0.05) - median,
        "p99 - p50": np.percentile(maps, 99, 1) - median,
        **{f"fraction >= {t}": (maps >= t).mean(1) for t in (0.2, 0.3, 0.5)},
    }
    print(json.dumps({"samples": args.samples, "forged": int(truth.sum()),
                      **{name: round(roc_auc(v, truth), 3) for name, v in candidates.items()}}, indent=1))


if __name__ == "__main__":
    main()
