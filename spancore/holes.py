"""Hole shapes for inpainting: free-form brush strokes as DeepFill v2 draws them,
rectangles, ellipses, and the `--mask` shape specs of `span forge`.

Torch-free and OpenCV-free (numpy + Pillow only): the generator's training
(models/train_inpainting.py) and `span forge` (service/forge.py) draw the same
shapes. Every mask is a uint8 H×W array, 1 = hole.
"""
from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image, ImageDraw


class ShapeError(ValueError):
    """A shape spec that cannot be drawn (bad syntax, outside the frame, empty)."""


def brush_strokes(rng: np.random.Generator, h: int, w: int, max_strokes: int = 3,
                  min_vertex: int = 4, max_vertex: int = 12) -> np.ndarray:
    """DeepFill v2's free-form mask (Yu et al. 2019, `brush_stroke_mask`): 1-3 strokes, each a
    polyline of 4-11 vertices with alternating turning angles around 2π/5 and segment
    lengths ~ N(r, r/2) for r = diagonal/8, drawn with round joints at a width of 12-40 px
    at 256 px (scaled with the frame here so the hole share does not depend on the size)."""
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    scale = min(h, w) / 256
    min_width, max_width = max(2.0, 12 * scale), max(3.0, 40 * scale)
    average_radius = math.sqrt(h * h + w * w) / 8
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        n = int(rng.integers(min_vertex, max_vertex))
        lo = mean_angle - rng.uniform(0, angle_range)
        hi = mean_angle + rng.uniform(0, angle_range)
        angles = [2 * math.pi - rng.uniform(lo, hi) if i % 2 == 0 else rng.uniform(lo, hi) for i in range(n)]
        vertex = [(int(rng.integers(0, w)), int(rng.integers(0, h)))]
        for a in angles:
            r = float(np.clip(rng.normal(average_radius, average_radius / 2), 0, 2 * average_radius))
            x = float(np.clip(vertex[-1][0] + r * math.cos(a), 0, w))
            y = float(np.clip(vertex[-1][1] + r * math.sin(a), 0, h))
            vertex.append((int(x), int(y)))
        width = int(rng.uniform(min_width, max_width))
        draw.line(vertex, fill=1, width=width)
        for x, y in vertex:  # round joints
            draw.ellipse((x - width // 2, y - width // 2, x + width // 2, y + width // 2), fill=1)
    mask = np.asarray(canvas, np.uint8)
    if rng.random() < 0.5:
        mask = mask[:, ::-1]
    if rng.random() < 0.5:
        mask = mask[::-1]
    return np.ascontiguousarray(mask)


def rectangle(h: int, w: int, x: int, y: int, rw: int, rh: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[max(0, y):max(0, y + rh), max(0, x):max(0, x + rw)] = 1
    return mask


def ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=1)
    return np.asarray(canvas, np.uint8).copy()


def random_rectangle(rng: np.random.Generator, h: int, w: int, lo: float = 0.1, hi: float = 0.45) -> np.ndarray:
    """An axis-aligned box whose sides are lo..hi of the frame's, anywhere inside it."""
    rh, rw = int(h * rng.uniform(lo, hi)), int(w * rng.uniform(lo, hi))
    y, x = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
    return rectangle(h, w, x, y, max(rw, 1), max(rh, 1))


def random_ellipse(rng: np.random.Generator, h: int, w: int, lo: float = 0.05, hi: float = 0.22) -> np.ndarray:
    rx, ry = w * rng.uniform(lo, hi), h * rng.uniform(lo, hi)
    cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
    return ellipse(h, w, cx, cy, rx, ry)


def random_hole(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, str]:
    """One hole for `span forge --random` / `--mask random`: strokes, a box or an ellipse,
    covering 1-40% of the frame (redrawn otherwise). Returns (mask, what was drawn)."""
    for _ in range(20):
        style = str(rng.choice(["strokes", "rectangle", "ellipse"]))
        if style == "strokes":
            mask = brush_strokes(rng, h, w)
        elif style == "rectangle":
            mask = random_rectangle(rng, h, w)
        else:
            mask = random_ellipse(rng, h, w)
        if 0.01 <= mask.mean() <= 0.4:
            return mask, style
    return random_rectangle(rng, h, w, 0.2, 0.3), "rectangle"


_SPEC = re.compile(r"^(rect|ellipse):(-?\d+(?:\.\d+)?(?:,-?\d+(?:\.\d+)?){3})$")


def parse_shape(spec: str, h: int, w: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A `--mask` shape spec drawn on an h×w frame:
    ``rect:x,y,w,h`` (pixels, top-left corner), ``ellipse:cx,cy,rx,ry`` (pixels) or ``random``.
    Raises ShapeError with a one-line reason if the spec is malformed or the shape misses the frame."""
    spec = spec.strip()
    if spec == "random":
        return random_hole(rng if rng is not None else np.random.default_rng(), h, w)[0]
    m = _SPEC.match(spec)
    if m is None:
        raise ShapeError(f"bad shape spec {spec!r}: use rect:x,y,w,h, ellipse:cx,cy,rx,ry or random")
    a, b, c, d = (float(v) for v in m.group(2).split(","))
    if c <= 0 or d <= 0:
        raise ShapeError(f"bad shape spec {spec!r}: width/height (or radii) must be positive")
    if m.group(1) == "rect":
        mask = rectangle(h, w, round(a), round(b), round(c), round(d))
    else:
        mask = ellipse(h, w, a, b, c, d)
    if not mask.any():
        raise ShapeError(f"shape {spec!r} lies outside the {w}x{h} image")
    return mask
