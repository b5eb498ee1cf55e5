"""Stage-2 localisation losses and the operating threshold of models/train.py."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- losses

def grid_target(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The mask on the working grid: area average when shrinking (soft edges), bilinear otherwise."""
    if mask.shape[-2] >= grid[0] and mask.shape[-1] >= grid[1]:
        return F.interpolate(mask, size=grid, mode="area")
    return F.interpolate(mask, size=grid, mode="bilinear", align_corners=False)


def localisation_loss(logits: torch.Tensor, mask: torch.Tensor, dice_weight: float,
                      pos_weight: float = 1.0, dice: str = "batch") -> tuple[torch.Tensor, dict]:
    """Pixel BCE plus soft Dice, on the working grid (where the head decides).

    dice="batch": one Dice over the whole batch, so pristine (empty) masks do not blow it up;
    the batch's largest mask dominates it.
    dice="image": the mean of each forged sample's own Dice, the per-image F1 that
    `span evaluate` reports, so a 3 % splice weighs as much as a 40 % one (real splices are
    often small). Pristine samples are left to the BCE; a batch with no forged sample falls
    back to the batch Dice, which pushes its whole map down.
    """
    if dice not in DICE_MODES:
        raise ValueError(f"dice must be one of {DICE_MODES}, not {dice!r}")
    logits = logits.float()
    target = grid_target(mask, tuple(logits.shape[-2:]))
    weight = None if pos_weight == 1.0 else torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    prob = torch.sigmoid(logits)
    forged = target.flatten(1).sum(1) > 0
    if dice == "image" and forged.any():
        p, t = prob.flatten(1)[forged], target.flatten(1)[forged]
        dice_term = (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()
    else:
        dice_term = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return bce + dice_weight * dice_term, {"bce": bce.item(), "dice": dice_term.item()}


DICE_MODES = ("batch", "image")

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.01), 2)  # the 0.01 grid operating points are chosen on


def per_image_f1_curve(heatmaps, truth) -> np.ndarray:
    """Mean per-image F1 over the forged photos at each of THRESHOLDS (0 where none is forged).
    Sequences of maps of different sizes are fine: each photo is scored on its own."""
    from spancore.scoring import Confusion

    forged = [i for i in range(len(truth)) if truth[i].any()]
    if not forged:
        return np.zeros(len(THRESHOLDS))
    return np.array([np.mean([Confusion.of(heatmaps[i] >= t, truth[i]).f1() or 0.0 for i in forged])
                     for t in THRESHOLDS])


def best_on_curve(curve: np.ndarray) -> tuple[float, float]:
    """(threshold, value) at the curve's maximum; the lowest threshold on ties."""
    i = int(np.argmax(curve))
    return float(THRESHOLDS[i]), float(curve[i])


def operating_point(heatmaps: np.ndarray, truth: np.ndarray, per_image: bool = False) -> tuple[float, float]:
    """The decision threshold with the best pixel F1 on validation, on a 0.01 grid; and that F1.
    The exported manifest carries it as the service's default threshold (never chosen on dev).

    per_image=False: F1 over all validation pixels, forged and pristine photos pooled.
    per_image=True: the mean of each forged photo's own F1, the convention `span evaluate`
    reports (docs/evaluation.md), so the threshold is chosen for the figure users are shown.
    """
    from spancore.scoring import Confusion

    if per_image:
        return best_on_curve(per_image_f1_curve(heatmaps, truth))
    return best_on_curve(np.array([Confusion.of(heatmaps >= t, truth).f1() or 0.0 for t in THRESHOLDS]))
