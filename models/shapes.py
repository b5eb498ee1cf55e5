"""Region shapes and blending for forgery synthesis (models/synthesis.py): random and
segmented manipulation regions, feathered blending weights and the ground truth of a blend."""
from __future__ import annotations

import math

import cv2
import numpy as np

FEATHER_MAX_RADIUS = 6  # px: a feathered edge never reaches further than this outside the mask


# ----------------------------------------------------------------------------- region shapes

def random_shape(rng: np.random.Generator, h: int, w: int, area: float, p_edge: float = 0.0,
                 uniform: bool = False) -> np.ndarray:
    """A binary float mask of roughly ``area`` (fraction of h*w): a smooth random blob,
    an ellipse or a rotated rectangle, at a random position fully inside the frame or, with
    probability ``p_edge``, cut by the frame's edge (real edits touch borders too).
    ``uniform`` (p_edge is then unused): anywhere, the frame cutting it wherever it falls, so
    that every pixel is about as likely to be edited as any other (see :func:`uniform_offset`)."""
    r = math.sqrt(area * h * w / math.pi)
    style = rng.choice(["blob", "blob", "ellipse", "rectangle"])
    aspect = math.exp(rng.uniform(-0.6, 0.6))
    rx, ry = r * aspect, r / aspect
    angle = rng.uniform(0, 2 * math.pi)
    t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    if style == "rectangle":
        pts = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]])
        pts *= math.sqrt(math.pi) / 2  # same area as the ellipse of radii rx, ry
    else:
        radius = np.ones_like(t)
        if style == "blob":
            for k in range(2, 6):  # low-frequency wobble keeps the outline smooth and star-shaped
                radius += rng.uniform(0, 0.35 / k * 2) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
            radius = np.clip(radius, 0.3, None)
        pts = np.stack([rx * radius * np.cos(t), ry * radius * np.sin(t)], 1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = pts @ rot.T
    lo, hi = pts.min(0), pts.max(0)
    span = np.maximum(hi - lo, 1)
    scale = min(1.0, 0.9 * w / span[0], 0.9 * h / span[1])  # never larger than the frame
    pts *= scale
    lo, hi = pts.min(0), pts.max(0)
    if uniform:
        for _ in range(8):
            cx, cy = uniform_offset(rng, w, lo[0], hi[0]), uniform_offset(rng, h, lo[1], hi[1])
            mask = _fill(pts + [cx, cy], h, w)
            if mask.sum() >= MIN_INSIDE * _polygon_area(pts):
                return mask
    cx = rng.uniform(-lo[0], w - hi[0]) if w - hi[0] > -lo[0] else w / 2
    cy = rng.uniform(-lo[1], h - hi[1]) if h - hi[1] > -lo[1] else h / 2
    if p_edge and rng.random() < p_edge:  # centre on a random point of the frame's edge band
        if rng.random() < 0.5:
            cx = float(rng.choice([rng.uniform(0, 0.15 * w), rng.uniform(0.85 * w, w)]))
        else:
            cy = float(rng.choice([rng.uniform(0, 0.15 * h), rng.uniform(0.85 * h, h)]))
    return _fill(pts + [cx, cy], h, w)


# A shape placed uniformly keeps at least this share of its area inside the frame: a sliver
# of a region at the very edge teaches nothing and is not what an editor leaves.
MIN_INSIDE = 0.3


def uniform_offset(rng: np.random.Generator, size: int, lo: float, hi: float) -> float:
    """Where to put a shape extending from ``lo`` (<= 0) to ``hi`` (>= 0) about its anchor
    along an axis of ``size`` px, so that every pixel is about equally likely to be covered.
    Placing shapes fully inside the frame covers the outermost pixels far less often than
    the centre, and a network trained on that learns to keep its map dark along the border.
    Here the shape may stick out of the frame by up to (1 - MIN_INSIDE) of its extent."""
    extent = hi - lo
    return float(rng.uniform(-hi + MIN_INSIDE * extent, size - lo - MIN_INSIDE * extent))


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _fill(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(np.float32)


def segment_shape(rng: np.random.Generator, seg: np.ndarray | None, lo: float, hi: float) -> np.ndarray | None:
    """One human-segmented region of the crop whose area fraction lies in [lo, hi], or None."""
    if seg is None:
        return None
    labels, counts = np.unique(seg, return_counts=True)
    frac = counts / seg.size
    ok = labels[(frac >= lo) & (frac <= hi)]
    if ok.size == 0:
        return None
    mask = (seg == rng.choice(ok)).astype(np.uint8)
    # keep the largest connected piece: an object, not scattered fragments
    n, cc, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 2:
        mask = (cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    if mask.mean() < lo:
        return None
    return mask.astype(np.float32)


def region(rng: np.random.Generator, seg: np.ndarray | None, h: int, w: int, lo: float, hi: float,
           p_edge: float = 0.0, uniform: bool = False) -> np.ndarray:
    """A manipulation region: a segmented object when available (60%), else a random shape."""
    if seg is not None and rng.random() < 0.6:
        m = segment_shape(rng, seg, lo, hi)
        if m is not None:
            return m
    return random_shape(rng, h, w, math.exp(rng.uniform(math.log(lo), math.log(hi))), p_edge, uniform)


def alpha_of(rng: np.random.Generator, mask: np.ndarray, p_feather: float = 0.5) -> np.ndarray:
    """Blending weights for a region: hard edges, or feathered by a Gaussian whose
    support is at most FEATHER_MAX_RADIUS pixels (so the edit stays near the mask)."""
    if rng.random() >= p_feather:
        return mask
    sigma = rng.uniform(0.7, FEATHER_MAX_RADIUS / 2.5)
    k = 2 * FEATHER_MAX_RADIUS + 1
    return cv2.GaussianBlur(mask, (k, k), sigma, borderType=cv2.BORDER_CONSTANT)


def blend(base: np.ndarray, edited: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return np.clip(np.rint(base * (1 - a) + edited * a), 0, 255).astype(np.uint8)


def truth_of(alpha: np.ndarray) -> np.ndarray:
    """Ground truth of a blended edit: where the edit dominates."""
    return (alpha >= 0.5).astype(np.float32)
