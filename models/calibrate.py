"""The operating point of a trained checkpoint, chosen on a larger synthetic validation set.

    python -m models.calibrate runs/NAME/final.pt --config models/configs/NAME.json \
        --samples 256 [--large 64] --out runs/NAME/calibrated.pt
    span export --checkpoint runs/NAME/calibrated.pt ...

A training run validates on a few dozen forgeries (val_samples), enough to rank checkpoints
but a noisy place to pick an operating point. This draws `--samples` fresh BSDS500 *val*
forgeries with the run's own synthesis recipe (another seed than the run's validation set),
runs the map that ships, and picks three numbers:

- the pixel decision, together: the threshold and the peak-relative cut (a pixel is marked at
  or above the threshold *and* at or above that fraction of its map's peak:
  spancore.scoring.decision_mask), with the best mean per-image F1 over the forged samples,
  the convention `span evaluate` reports. Ties go to no cut. The cut keeps a map's strongest
  region and drops the weaker marks spread around it, which a single threshold cannot;
- the image decision: the image-score threshold with the best balanced accuracy between the
  forged and the untouched samples. The pixel threshold is a poor one: a pixel decision
  wants a low floor, an image decision a high bar (0.12 against 0.4-0.5 for the 2 Dec weights).

The threshold alone and the pooled-pixel optimum are recorded beside them for comparison.
With `--large N` it also maps N crops of the held-out cameras at the large-crop size (the
config's `stage2.large`, else LargeCrops' defaults: 768 px) and each criterion is the mean of
the two sets', so that whole-photo scale counts as much as the 256-px patches.
The dev benchmark is never touched. The output is the same checkpoint with
`training.validation.val_threshold`, `val_relative_cut` and `val_image_threshold` replaced (what
`span export` writes into the manifest) and a `training.calibration` record of how they were chosen.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from models.losses import (
    RELATIVE_CUTS, THRESHOLDS, best_on_curve, best_on_surface, operating_point, per_image_f1_surface,
)
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
    """The checkpoint's dict with the calibrated operating point in place, and the record under
    training.calibration. The operating point is three numbers, each chosen on the synthetic sets:

    - threshold and relative_cut, together: the pixel decision (spancore.scoring.decision_mask)
      with the best mean per-image F1 over forged samples, the figure `span evaluate` reports;
    - image_threshold: the image decision (image score at or above it) with the best balanced
      accuracy between forged and untouched samples.

    With ``large_samples`` each criterion is the mean over the two sets (patches and held-out
    cameras' large crops, weighted equally), so that neither scale decides alone."""
    from spancore.scoring import image_scores, roc_auc

    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    span = Span.from_checkpoint(data)
    heat, truth, seed = calibration_maps(span, config, samples, batch_size)
    sets = [(heat, truth)]
    if large_samples:
        large_heat, large_truth, large_seed = large_calibration_maps(span, config, large_samples)
        sets.append((large_heat, large_truth))
    surfaces = [per_image_f1_surface(h, t) for h, t in sets]
    both = np.mean(surfaces, axis=0)
    threshold, relative_cut, both_f1 = best_on_surface(both)
    plain_threshold, _, plain_both_f1 = best_on_surface(both[:1])  # the threshold alone (cut 0)
    at = (int(np.flatnonzero(RELATIVE_CUTS == relative_cut)[0]), int(np.flatnonzero(THRESHOLDS == threshold)[0]))
    plain_at = (0, int(np.flatnonzero(THRESHOLDS == plain_threshold)[0]))
    accuracy = [image_accuracy_curve(image_scores(h), t.reshape(len(t), -1).any(1)) for h, t in sets]
    image_threshold, image_accuracy = best_on_curve(np.mean(accuracy, axis=0))
    image_at = int(np.flatnonzero(THRESHOLDS == image_threshold)[0])

    def summary(index: int, h: np.ndarray, t: np.ndarray) -> dict:
        forged = t.reshape(len(t), -1).any(1)
        return {
            "f1_per_image": round(float(surfaces[index][at]), 4),
            "f1_per_image_threshold_alone": round(float(surfaces[index][plain_at]), 4),
            "image_balanced_accuracy": round(float(accuracy[index][image_at]), 4),
            "pixel_auc": float(np.mean([roc_auc(m, k) for m, k in zip(h, t) if 0 < k.sum() < k.size])),
            "image_auc": roc_auc(image_scores(h), forged),
        }

    pooled_threshold, pooled_f1 = operating_point(heat, truth)
    record = {
        "samples": samples, "forged": int(truth.reshape(len(truth), -1).any(1).sum()), "seed": seed,
        "split": "BSDS500 val",
        "criterion": "pixels: mean per-image F1 over forged samples (as span evaluate reports) of decision_mask "
                     "over (threshold, relative_cut); images: balanced accuracy of image score >= image_threshold",
        "threshold": threshold, "relative_cut": relative_cut, "image_threshold": image_threshold,
        "threshold_alone": plain_threshold,
        **summary(0, heat, truth),
        "pooled_threshold": pooled_threshold, "pooled_f1": round(pooled_f1, 4),
    }
    if large_samples:
        own_threshold, own_f1 = best_on_curve(surfaces[1][0])
        record["criterion"] += "; each the mean of this set's and the large crops', weighted equally"
        record["mean_f1_of_both"] = round(both_f1, 4)
        record["mean_f1_of_both_threshold_alone"] = round(plain_both_f1, 4)
        record["large"] = {
            "samples": large_samples, "forged": int(large_truth.reshape(len(large_truth), -1).any(1).sum()),
            "seed": large_seed, "split": "held-out cameras", "size": int(large_heat.shape[-1]),
            **summary(1, large_heat, large_truth),
            "own_best_threshold": own_threshold, "own_best_f1": round(own_f1, 4),
        }
    training = dict(data.get("training") or {})
    training["validation"] = {**(training.get("validation") or data.get("validation") or {}),
                              "val_threshold": threshold, "val_relative_cut": relative_cut,
                              "val_image_threshold": image_threshold}
    training["calibration"] = record
    data["training"] = training
    return data


def image_accuracy_curve(scores: np.ndarray, forged: np.ndarray) -> np.ndarray:
    """Balanced accuracy of `score >= t` (forged vs untouched) at each of THRESHOLDS; 0.5 with one class."""
    from spancore.scoring import Confusion

    return np.array([Confusion.of(scores >= float(t), forged).balanced_accuracy() or 0.5 for t in THRESHOLDS])


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
