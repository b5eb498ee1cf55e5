"""The operating threshold of a trained checkpoint, chosen on a larger synthetic validation set.

    python -m models.calibrate runs/NAME/final.pt --config models/configs/NAME.json \
        --samples 256 --out runs/NAME/calibrated.pt
    span export --checkpoint runs/NAME/calibrated.pt ...

A training run validates on a few dozen forgeries (val_samples), enough to rank checkpoints
but a noisy place to pick a threshold. This draws `--samples` fresh BSDS500 *val* forgeries
with the run's own synthesis recipe (another seed than the run's validation set), runs the
map that ships, and picks the threshold with the best mean per-image F1 over the forged
ones: the convention `span evaluate` reports. The pooled-pixel optimum is recorded beside it
for comparison. With `--large N` it also maps N crops of the held-out cameras at the
large-crop size (the config's `stage2.large`, else LargeCrops' defaults: 768 px) and picks the
threshold with the best mean of the two sets' per-image F1, so that whole-photo scale counts
as much as the 256-px patches (the shipped threshold since 2 Dec 2026 was chosen this way).
The dev benchmark is never touched. The output is the same checkpoint with
`training.validation.val_threshold` replaced (what `span export` writes into the manifest) and
a `training.calibration` record of how it was chosen.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from models.losses import THRESHOLDS, best_on_curve, operating_point, per_image_f1_curve
from models.span import Span
from models.train import Run, TrainConfig, large_validation_set, validation_heatmaps, validation_set

CALIBRATION_SEED = 30_000  # + the run's seed: not its training stream (seed + 1) nor its validation set (10 000 +)
LARGE_CALIBRATION_SEED = 50_000  # + the run's seed: held-out cameras' crops, not the run's large validation set (20 000 +)


def calibration_maps(span: Span, config: TrainConfig, samples: int, batch_size: int = 4,
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """(heatmaps, truth, seed) of ``samples`` fresh BSDS-val forgeries drawn with the run's recipe
    and CALIBRATION_SEED + its seed, mapped as the service maps them (bench.operating_rules too)."""
    run = _calibration_run(config)
    seed = CALIBRATION_SEED + config.seed
    images, cues, masks, _ = validation_set(run, span.config, samples, seed)
    heat, truth, _ = validation_heatmaps(span, images, masks, run, batch_size, cues)
    return heat, truth, seed


def large_calibration_maps(span: Span, config: TrainConfig, samples: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(heatmaps, truth, seed) of ``samples`` crops of the held-out cameras at the config's
    large-crop size (LargeCrops defaults when the config has none), mapped as the service maps them."""
    run = _calibration_run(config)
    if run.config.stage2.large is None:
        run.config.stage2.large = {}  # LargeCrops' defaults
    seed = LARGE_CALIBRATION_SEED + config.seed
    images, cues, masks, _ = large_validation_set(run, span.config, samples, seed)
    heat, truth, _ = validation_heatmaps(span, images, masks, run, 1, cues)
    return heat, truth, seed


def _calibration_run(config: TrainConfig) -> Run:
    """A Run over a copy of the config, named apart from the training run and never
    initialised from a checkpoint: it only draws and maps forgeries."""
    config = copy.deepcopy(config)
    config.name, config.init_checkpoint = f"calibrate-{config.name}", None
    return Run(config, resume=True)


def calibrate(checkpoint: Path, config: TrainConfig, samples: int, batch_size: int = 4,
              large_samples: int = 0) -> dict:
    """The checkpoint's dict with the calibrated threshold in place, and the record under training.calibration.
    With ``large_samples``, the threshold maximises the mean of the two sets' per-image F1
    (patches and held-out cameras' large crops, weighted equally), so that neither scale decides alone."""
    from spancore.scoring import image_scores, roc_auc

    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    span = Span.from_checkpoint(data)
    heat, truth, seed = calibration_maps(span, config, samples, batch_size)
    curve = per_image_f1_curve(heat, truth)
    threshold, f1 = best_on_curve(curve)
    large_record = None
    if large_samples:
        large_heat, large_truth, large_seed = large_calibration_maps(span, config, large_samples)
        large_curve = per_image_f1_curve(large_heat, large_truth)
        threshold, both = best_on_curve((curve + large_curve) / 2)
        own_threshold, own_f1 = best_on_curve(large_curve)
        at = int(np.flatnonzero(THRESHOLDS == threshold)[0])
        f1 = float(curve[at])
        large_forged = large_truth.reshape(len(large_truth), -1).any(1)
        large_record = {
            "samples": large_samples, "forged": int(large_forged.sum()), "seed": large_seed,
            "split": "held-out cameras", "size": int(large_heat.shape[-1]),
            "f1_per_image": round(float(large_curve[at]), 4), "mean_f1_of_both": round(both, 4),
            "own_best_threshold": own_threshold, "own_best_f1": round(own_f1, 4),
            "pixel_auc": float(np.mean([roc_auc(h, t) for h, t in zip(large_heat, large_truth)
                                        if 0 < t.sum() < t.size])),
            "image_auc": roc_auc(image_scores(large_heat), large_forged),
        }
    pooled_threshold, pooled_f1 = operating_point(heat, truth)
    forged = truth.reshape(len(truth), -1).any(1)
    record = {
        "samples": samples, "forged": int(forged.sum()), "seed": seed, "split": "BSDS500 val",
        "criterion": "mean per-image F1 over forged samples (as span evaluate reports)",
        "threshold": threshold, "f1_per_image": round(f1, 4),
        "pooled_threshold": pooled_threshold, "pooled_f1": round(pooled_f1, 4),
        "pixel_auc": float(np.mean([roc_auc(h, t) for h, t in zip(heat, truth) if 0 < t.sum() < t.size])),
        "image_auc": roc_auc(image_scores(heat), forged),
    }
    if large_record is not None:
        record["criterion"] = ("mean of the per-image F1 over forged samples (as span evaluate reports) "
                               "of this set and of the large crops, weighted equally")
        record["large"] = large_record
    training = dict(data.get("training") or {})
    training["validation"] = {**(training.get("validation") or data.get("validation") or {}), "val_threshold": threshold}
    training["calibration"] = record
    data["training"] = training
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the run's training config (synthesis recipe, seed)")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--large", type=int, default=0, metavar="N",
                        help="also N large crops of the held-out cameras; the threshold is then chosen on both sets")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = calibrate(args.checkpoint, TrainConfig.load(args.config), args.samples, large_samples=args.large)
    torch.save(data, args.out)
    print({k: v for k, v in data["training"]["calibration"].items()})


if __name__ == "__main__":
    main()
