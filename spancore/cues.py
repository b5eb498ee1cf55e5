"""Fixed forensic cues: per 8x8 JPEG block, signals no short CPU training learns from scratch.

Training (models/synthesis.py) and serving (service/engine.py) call :func:`compute_cues` on
the same uint8 RGB array and get the same bytes: numpy and Pillow only, no torch, no OpenCV.
A JPEG encoder is no ONNX op, so the cues are the model's second input (``cues``), documented
in the weights manifest's input contract (``CUES_VERSION``, ``CUE_NAMES``).

The map is one value per 8x8 block of the image as given, blocks counted from (0, 0): the
grid a whole JPEG image has. Training crops keep that phase (crops start at multiples of 8
where the source's own compression is what is measured).

Channels (``CUE_NAMES``), each the log of a block statistic:
- ``ela_q90``, ``ela_q75``: error level (Krawetz 2007): mean |image - JPEG(image, q)| over the
  block and the three channels. A region saved at another quality, or on another grid, than
  its surroundings re-compresses differently; two qualities give a coarse JPEG ghost
  (Farid 2009: the quality at which a region changes least).
- ``noise``: mean |high-pass residual| of the luma (second-order, 4-neighbour Laplacian):
  another camera or a resampled region has another noise level.
- ``blockiness``: luma steps across the block's left and top grid lines over those inside it:
  high where the block sits on a JPEG grid at phase (0, 0), low where a pasted region's grid
  is shifted or was never compressed.
then the same four minus their median over the image (``*_rel``): what the image's own
baseline says is unusual, so the network need not learn each camera's level.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["BLOCK", "CUES_VERSION", "CUE_NAMES", "compute_cues", "cue_shape", "error_level"]

CUES_VERSION = "block8-v1"
BLOCK = 8
ELA_QUALITIES = (90, 75)
_ABSOLUTE = ("ela_q90", "ela_q75", "noise", "blockiness")
CUE_NAMES = _ABSOLUTE + tuple(f"{name}_rel" for name in _ABSOLUTE)


def cue_shape(height: int, width: int) -> tuple[int, int, int]:
    """(channels, block rows, block columns) of :func:`compute_cues` for an image of that size."""
    return len(CUE_NAMES), -(-height // BLOCK), -(-width // BLOCK)


def _jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    # Explicit settings (4:2:0, no optimisation): Pillow's defaults could change between versions.
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=2, optimize=False)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


def error_level(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Per-pixel, per-channel error level |rgb - JPEG(rgb, quality)|, uint8 H x W x 3."""
    again = _jpeg_roundtrip(rgb, quality)
    return np.maximum(rgb, again) - np.minimum(rgb, again)  # |a - b| without leaving uint8


# Block statistics are sums of integers (exact, so the same on every machine and in every
# process), divided by the number of pixels that entered them (edge blocks may be partial).

def _block_sums(values: np.ndarray) -> np.ndarray:
    """Sum over each 8x8 block (and over channels, for H x W x C) of an integer array, int64 (hb, wb)."""
    h, w = values.shape[:2]
    hb, wb = -(-h // BLOCK), -(-w // BLOCK)
    if (h, w) != (hb * BLOCK, wb * BLOCK):
        values = np.pad(values, ((0, hb * BLOCK - h), (0, wb * BLOCK - w)) + ((0, 0),) * (values.ndim - 2))
    # rows of a block first (contiguous), then its columns and channels
    channels = values.shape[2] if values.ndim == 3 else 1
    rows = values.reshape(hb, BLOCK, wb * BLOCK * channels).sum(axis=1, dtype=np.int64)
    return rows.reshape(hb, wb, -1).sum(axis=2)


def _block_counts(h: int, w: int) -> np.ndarray:
    """Pixels per block, float64 (hb, wb)."""
    rows = np.minimum(BLOCK, h - BLOCK * np.arange(-(-h // BLOCK)))
    cols = np.minimum(BLOCK, w - BLOCK * np.arange(-(-w // BLOCK)))
    return np.outer(rows, cols).astype(np.float64)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Integer luma x 1000 (ITU-R 601 weights), int32: exact."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return 299 * r + 587 * g + 114 * b


def _noise_residual(luma: np.ndarray) -> np.ndarray:
    """|4 x - (up + down + left + right)| with edge replication, in luma x 1000 units."""
    p = np.pad(luma, 1, mode="edge")
    return np.abs(4 * luma - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:])


def _blockiness(luma: np.ndarray) -> np.ndarray:
    """Per block: mean |luma step| across its left and top grid lines over the mean |step|
    between its other pixels, plus one grey level each (flat blocks give a ratio of ~1)."""
    h, w = luma.shape
    hb, wb = -(-h // BLOCK), -(-w // BLOCK)
    dx = np.zeros((hb * BLOCK, wb * BLOCK), np.int32)  # step from x-1 to x, stored at x
    dy = np.zeros_like(dx)
    dx[:h, 1:w] = np.abs(np.diff(luma, axis=1))
    dy[1:h, :w] = np.abs(np.diff(luma, axis=0))
    bx = dx.reshape(hb, BLOCK, wb, BLOCK)
    by = dy.reshape(hb, BLOCK, wb, BLOCK)
    across = bx[:, :, :, 0].sum(axis=1, dtype=np.int64) + by[:, 0, :, :].sum(axis=2, dtype=np.int64)
    within = bx.sum(axis=(1, 3), dtype=np.int64) + by.sum(axis=(1, 3), dtype=np.int64) - across
    rows = np.minimum(BLOCK, h - BLOCK * np.arange(hb)).astype(np.float64)
    cols = np.minimum(BLOCK, w - BLOCK * np.arange(wb)).astype(np.float64)
    # steps counted: the left line has `rows` steps (none for the image's first column), the top
    # line `cols` steps (none for the first row); the rest are inside
    across_n = np.outer(rows, (np.arange(wb) > 0).astype(np.float64)) + np.outer((np.arange(hb) > 0), cols)
    within_n = np.outer(rows, cols - 1) + np.outer(rows - 1, cols)
    across_mean = across / np.maximum(across_n, 1.0) / 1000.0
    within_mean = within / np.maximum(within_n, 1.0) / 1000.0
    return (across_mean + 1.0) / (within_mean + 1.0)


def compute_cues(rgb: np.ndarray) -> np.ndarray:
    """float32 (len(CUE_NAMES), ceil(H/8), ceil(W/8)) from uint8 RGB H x W x 3 (see module doc)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"compute_cues needs uint8 H x W x 3 RGB, got {rgb.dtype} {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    pixels = _block_counts(h, w)
    luma = _luma(rgb)
    absolute = [np.log1p(_block_sums(error_level(rgb, q)) / (3.0 * pixels)) for q in ELA_QUALITIES]
    absolute.append(np.log1p(_block_sums(_noise_residual(luma)) / (4000.0 * pixels)))
    absolute.append(np.log(_blockiness(luma)))
    relative = [a - np.median(a) for a in absolute]
    return np.stack(absolute + relative).astype(np.float32)
