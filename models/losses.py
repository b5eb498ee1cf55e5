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
                      pos_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Pixel BCE plus batch-level soft Dice, on the working grid (where the head decides).
    Dice over the whole batch, not per image, so pristine (empty) masks do not blow it up."""
    logits = logits.float()
    target = grid_target(mask, tuple(logits.shape[-2:]))
    weight = None if pos_weight == 1.0 else torch.tensor(pos_weight, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return bce + dice_weight * dice, {"bce": bce.item(), "dice": dice.item()}



def operating_point(heatmaps: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The decision threshold with the best pixel F1 over all validation pixels (forged and
    pristine photos pooled, as a deployment meets them), on a 0.01 grid; and that F1. The
    exported manifest carries it as the service's default threshold (never chosen on dev)."""
    from spancore.scoring import Confusion

    best = (0.5, -1.0)
    for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
        f1 = Confusion.of(heatmaps >= threshold, truth).f1() or 0.0
        if f1 > best[1]:
            best = (float(threshold), float(f1))
    return best

