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
RELATIVE_CUTS = np.round(np.arange(0.0, 0.96, 0.05), 2)  # spancore.scoring.decision_mask's cut; 0: off


def per_image_f1_curve(heatmaps, truth) -> np.ndarray:
    """Mean per-image F1 over the forged photos at each of THRESHOLDS (0 where none is forged).
    Sequences of maps of different sizes are fine: each photo is scored on its own. The surface's
    row without a cut: one sort per map, exact (its test checks it against Confusion, pixel by pixel)."""
    return per_image_f1_surface(heatmaps, truth, cuts=np.zeros(1))[0]


def f1_at_levels(heatmap: np.ndarray, truth: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """F1 of `heatmap >= level` for each level, exactly as Confusion.of(...).f1() (0 where
    nothing is marked), from one sort of the map: a (threshold, cut) grid is hundreds of levels."""
    values = np.asarray(heatmap).ravel()
    order = np.argsort(-values, kind="stable")
    descending, hits = values[order], np.asarray(truth, dtype=bool).ravel()[order]
    true_positives = np.concatenate([[0], np.cumsum(hits)])
    # pixels at or above a level: the comparison in the map's dtype, as `heatmap >= level` makes it
    marked = np.searchsorted(-descending, -np.asarray(levels, dtype=values.dtype), side="right")
    tp = true_positives[marked]
    return 2.0 * tp / np.maximum(marked + hits.sum(), 1)


def per_image_f1_surface(heatmaps, truth, thresholds: np.ndarray = THRESHOLDS,
                         cuts: np.ndarray = RELATIVE_CUTS) -> np.ndarray:
    """Mean per-image F1 over the forged photos of decision_mask at every (cut, threshold):
    an array [len(cuts), len(thresholds)]; row 0 (cut 0) is per_image_f1_curve."""
    forged = [i for i in range(len(truth)) if truth[i].any()]
    surface = np.zeros((len(cuts), len(thresholds)))
    for i in forged:
        peak = float(np.max(heatmaps[i]))
        levels = np.maximum(np.asarray(thresholds)[None, :], np.asarray(cuts)[:, None] * peak)
        surface += f1_at_levels(heatmaps[i], truth[i], levels.ravel()).reshape(levels.shape)
    return surface / max(len(forged), 1)


def best_on_surface(surface: np.ndarray, thresholds: np.ndarray = THRESHOLDS,
                    cuts: np.ndarray = RELATIVE_CUTS) -> tuple[float, float, float]:
    """(threshold, cut, value) at the surface's maximum; on ties the smallest cut (0: none),
    then the lowest threshold."""
    row, column = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return float(thresholds[column]), float(cuts[row]), float(surface[row, column])


def best_on_curve(curve: np.ndarray, grid: np.ndarray = THRESHOLDS) -> tuple[float, float]:
    """(grid value, curve value) at the curve's maximum; the lowest grid value on ties."""
    i = int(np.argmax(curve))
    return float(grid[i]), float(curve[i])


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
