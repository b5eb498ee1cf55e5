"""Image operations for forgery synthesis (models/synthesis.py) and the stage-1 labels
(:data:`STAGE1_CLASSES`: an operation and the parameter range that produced a patch)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.shapes import random_shape

# ----------------------------------------------------------------------------- operations
# Each operation maps (uint8 RGB, parameter, rng) to a same-sized uint8 RGB. They serve
# local retouching in stage 2 and whole/half-patch labels in stage 1.

def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def op_blur(img, sigma, rng):
    return cv2.GaussianBlur(img, (0, 0), sigma)


def op_median(img, ksize, rng):
    return cv2.medianBlur(img, int(ksize) | 1)


def op_noise(img, sigma, rng):
    return _u8(img + rng.normal(0, sigma, img.shape))


def op_gamma(img, gamma, rng):
    lut = _u8(255 * (np.arange(256) / 255) ** gamma)
    return lut[img]


def op_contrast(img, gain, rng):
    mean = img.reshape(-1, 3).mean(0)
    return _u8((img - mean) * gain + mean)


def op_colour(img, strength, rng):
    """Hue rotation and saturation change (strength in 0..1)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.choice([-1, 1]) * strength * 30) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + rng.choice([-1, 1]) * strength * 0.6), 0, 255)
    return cv2.cvtColor(_u8(hsv), cv2.COLOR_HSV2RGB)


def op_sharpen(img, amount, rng):
    blurred = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.0))
    return _u8(img.astype(np.float32) * (1 + amount) - blurred.astype(np.float32) * amount)


_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_LANCZOS4)


def op_resample(img, factor, rng):
    """factor < 1: down- then up-sampled (detail loss + interpolation traces);
    factor > 1: the centre zoomed by ``factor`` (an upscaled photo's periodic correlations)."""
    h, w = img.shape[:2]
    interp = int(rng.choice(_INTERPOLATIONS))
    if factor < 1:
        small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=interp)
        return cv2.resize(small, (w, h), interpolation=int(rng.choice(_INTERPOLATIONS[:2])))
    ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
    y, x = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(img[y:y + ch, x:x + cw], (w, h), interpolation=int(rng.choice(_INTERPOLATIONS[:2])))


def jpeg(img: np.ndarray, quality: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """JPEG round trip. ``shift`` moves the 8×8 grid relative to the frame (misaligned
    double compression): the image is padded by it before encoding and cropped after."""
    dy, dx = shift
    src = cv2.copyMakeBorder(img, dy, 0, dx, 0, cv2.BORDER_REFLECT) if dy or dx else img
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(src, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out[dy:, dx:])


def op_jpeg(img, quality, rng):
    return jpeg(img, int(round(quality)))


def op_inpaint(img, area, rng):
    """Fill random shapes covering ``area`` of the frame with OpenCV inpainting."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    while mask.mean() < area:
        mask = np.maximum(mask, random_shape(rng, h, w, rng.uniform(0.03, 0.12)))
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    return cv2.inpaint(img, mask.astype(np.uint8), float(rng.uniform(3, 7)), method)


OPERATIONS = {
    "blur": op_blur, "median": op_median, "noise": op_noise, "gamma": op_gamma,
    "contrast": op_contrast, "colour": op_colour, "sharpen": op_sharpen,
    "resample": op_resample, "jpeg": op_jpeg, "inpaint": op_inpaint,
}

# Local retouching ranges (stage 2): far enough from identity to be an edit.
RETOUCH_RANGES = {
    "blur": (0.8, 3.0), "median": (3, 7), "noise": (3.0, 15.0), "gamma": (0.5, 1.9),
    "contrast": (0.5, 1.7), "colour": (0.3, 1.0), "sharpen": (0.6, 3.0), "resample": (0.35, 0.8),
}


@dataclass(frozen=True)
class OpClass:
    """One stage-1 label: an operation and the parameter range that produced the patch."""
    name: str
    op: str | None
    lo: float = 0.0
    hi: float = 0.0
    integer: bool = False  # sample odd integers (median kernel sizes)

    def sample(self, rng: np.random.Generator) -> float:
        if self.integer:
            return float(rng.choice(np.arange(int(self.lo), int(self.hi) + 1, 2)))
        return float(rng.uniform(self.lo, self.hi))


STAGE1_CLASSES = (
    OpClass("pristine", None),
    OpClass("jpeg q50-69", "jpeg", 50, 69.49),
    OpClass("jpeg q70-84", "jpeg", 69.5, 84.49),
    OpClass("jpeg q85-97", "jpeg", 84.5, 97),
    OpClass("blur s0.5-1.2", "blur", 0.5, 1.2),
    OpClass("blur s1.2-3", "blur", 1.2, 3.0),
    OpClass("median k3", "median", 3, 3, True),
    OpClass("median k5-7", "median", 5, 7, True),
    OpClass("noise s2-6", "noise", 2, 6),
    OpClass("noise s6-15", "noise", 6, 15),
    OpClass("gamma 0.5-0.85", "gamma", 0.5, 0.85),
    OpClass("gamma 1.2-2", "gamma", 1.2, 2.0),
    OpClass("contrast 0.5-0.85", "contrast", 0.5, 0.85),
    OpClass("contrast 1.2-1.8", "contrast", 1.2, 1.8),
    OpClass("colour", "colour", 0.3, 1.0),
    OpClass("sharpen 0.5-1.2", "sharpen", 0.5, 1.2),
    OpClass("sharpen 1.2-3", "sharpen", 1.2, 3.0),
    OpClass("resample down 0.4-0.85", "resample", 0.4, 0.85),
    OpClass("resample up 1.15-2", "resample", 1.15, 2.0),
    OpClass("inpaint", "inpaint", 0.15, 0.4),
)
STAGE1_CLASS_NAMES = tuple(c.name for c in STAGE1_CLASSES)
