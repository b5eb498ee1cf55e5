"""What every forensic layer answers: a section with its summary figures, an optional picture, its time.

A layer either applies to a file (summary figures, and for pixel layers a map in 0..1 the
size of the photo) or says why it does not ("not a JPEG", "no EXIF", "OpenCV is not
installed"): `NotApplicable` carries that reason and never becomes an HTTP error.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.render import heatmap_png  # the same 8-bit encoding as the model's heatmap


class NotApplicable(Exception):
    """The layer has nothing to say about this file; the message says why, in the analyst's words."""


@dataclass
class Photo:
    """What the layers read: the upload's bytes, its pixels as displayed, and how it was stored.

    `data` is the file as sent (quantisation tables, EXIF, XMP, C2PA live there);
    `rgb` is the decoded photo after EXIF orientation (what the pixel layers look at).
    """
    data: bytes
    rgb: np.ndarray  # uint8 [H, W, 3]
    format: str  # Pillow's name for the container: JPEG, PNG, TIFF, HEIF, WEBP, BMP
    orientation: int | None = None


@dataclass
class LayerResult:
    name: str
    applicable: bool
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why not applicable
    heatmap: np.ndarray | None = None  # float32 [H, W] in 0..1 (pixel layers), the photo as displayed
    milliseconds: float = 0.0

    @classmethod
    def not_applicable(cls, name: str, reason: str) -> LayerResult:
        return cls(name=name, applicable=False, reason=reason)

    def as_json(self, *, include_png: bool = True) -> dict[str, Any]:
        answer: dict[str, Any] = {"applicable": self.applicable}
        if not self.applicable:
            answer["reason"] = self.reason
        answer["summary"] = self.summary
        if include_png and self.heatmap is not None:
            answer["png_base64url"] = png_base64url(self.heatmap)
        answer["ms"] = round(self.milliseconds, 2)
        return answer


def png_base64url(heatmap: np.ndarray) -> str:
    """An 8-bit grayscale PNG (white = 1) as URL-safe base64 without padding (RFC 4648 §5).

    URL-safe so that a client may put it in a URL or a file name as it is; browsers decode it
    after swapping '-_' for '+/' (the page does), Python with base64.urlsafe_b64decode after
    adding '=' padding.
    """
    return base64.urlsafe_b64encode(heatmap_png(heatmap)).rstrip(b"=").decode("ascii")


def decode_base64url(text: str) -> bytes:
    """The inverse of png_base64url's encoding (for clients and tests)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601 weights, as JPEG's Y channel), float32 [H, W] in 0..255."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def block_reduce(values: np.ndarray, block: int, reduce=np.mean) -> np.ndarray:
    """Reduce [H, W] over non-overlapping block x block tiles (edge tiles cover what is left)."""
    height, width = values.shape
    rows, cols = -(-height // block), -(-width // block)
    padded = np.pad(values, ((0, rows * block - height), (0, cols * block - width)), mode="edge")
    tiles = padded.reshape(rows, block, cols, block).swapaxes(1, 2).reshape(rows, cols, block * block)
    return reduce(tiles, axis=2)


def expand_blocks(values: np.ndarray, block: int, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of block_reduce's tiling: each tile's value over its pixels, cropped to shape."""
    return np.repeat(np.repeat(values, block, axis=0), block, axis=1)[: shape[0], : shape[1]]
