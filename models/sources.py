"""Source photos for forgery synthesis (models/synthesis.py): listing, loading, cropping.

Sources: BSDS500 train (with its human segmentations, for object-shaped masks),
Sun–Hays 80, Urban100 and the camera files of ``exif-samples`` for training;
BSDS500 val for validation. BSDS500 test is never listed, so never read.
Camera JPEGs (photos/cameras) are split into train and held-out files.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

try:  # the camera sources include HEIC/HEIF phone photos
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # e.g. the GPU machine's image: HEIC files are then skipped as unreadable
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".heic", ".heif"}
# exif-samples folders/files with broken or hostile metadata: test material, not photos.
EXCLUDED_EXIF = ("jpg/corrupted.jpg", "jpg/invalid/", "jpg/tests/")
# Large camera files are cropped (never resized: resampling would erase their traces)
# to this side once on load, so a worker's cache stays small.
MAX_SOURCE_SIDE = 1024


def shared_data_dir() -> Path:
    env = os.environ.get("SPAN_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Photo:
    path: Path
    segments: Path | None  # BSDS human segmentation (label map), if any


def list_photos(split: str, data_dir: Path | None = None, min_side: int = 0) -> list[Photo]:
    """Source photos of a split. ``train``: BSDS train + Sun–Hays + Urban100 + camera
    files; ``val``: BSDS val. There is deliberately no way to list BSDS test."""
    photos_dir = (data_dir or shared_data_dir()) / "photos"
    bsds = photos_dir / "bsds500"

    def bsds_split(name: str) -> list[Photo]:
        return [Photo(p, bsds / "segments" / f"{p.stem}.png") for p in sorted((bsds / name).glob("*.jpg"))]

    if split == "val":
        photos = bsds_split("val")
    elif split == "train":
        photos = bsds_split("train")
        for folder in ("sun-hays80", "urban100"):
            photos += [Photo(p, None) for p in sorted((photos_dir / folder).glob("*.jpg"))]
        exif = photos_dir / "exif-samples"
        for p in sorted(exif.rglob("*")):
            rel = p.relative_to(exif).as_posix()
            if p.suffix.lower() in PHOTO_SUFFIXES and not rel.startswith(EXCLUDED_EXIF):
                photos.append(Photo(p, None))
    else:
        raise ValueError(f"unknown split {split!r}: use 'train' or 'val' (BSDS test is held out)")
    if not photos:
        raise FileNotFoundError(f"no photos for split {split!r} under {photos_dir}")
    if min_side:
        photos = [ph for ph in photos if _usable(ph.path, min_side)]
    return photos


@functools.lru_cache(maxsize=None)
def _usable(path: Path, min_side: int) -> bool:
    """A real photo big enough to crop from: decodable header, no alpha (logos), both sides >= min_side."""
    try:
        with Image.open(path) as im:
            return im.mode in ("RGB", "L", "YCbCr", "CMYK") and min(im.size) >= min_side
    except Exception:  # broken files are skipped, not fatal
        return False


@functools.lru_cache(maxsize=160)
def load_photo(path: Path) -> np.ndarray:
    """RGB uint8, EXIF orientation applied, centre-cropped to MAX_SOURCE_SIDE. Cached per process."""
    with Image.open(path) as im:
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    return _centre_crop(rgb, MAX_SOURCE_SIDE)


def load_photo_full(path: Path) -> np.ndarray:
    """RGB uint8 at native size, EXIF orientation applied (not cached: camera files are large)."""
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


@functools.lru_cache(maxsize=160)
def load_segments(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return _centre_crop(np.asarray(im), MAX_SOURCE_SIDE)


def _centre_crop(a: np.ndarray, side: int) -> np.ndarray:
    """Centre crop starting at multiples of 8: a JPEG source keeps its 8x8 grid at phase (0, 0)."""
    h, w = a.shape[:2]
    y, x = max(0, (h - side) // 2) // 8 * 8, max(0, (w - side) // 2) // 8 * 8
    return np.ascontiguousarray(a[y:y + side, x:x + side])


HELD_OUT_CAMERA_EVERY = 5  # every 5th camera file (sorted) is held out for the large-photo benchmark


def list_cameras(split: str, data_dir: Path | None = None) -> list[Photo]:
    """The untouched camera JPEGs of photos/cameras (one per camera model): ``train`` = 4 in 5,
    ``held-out`` = every 5th (sorted by name), kept for large-photo forgeries (bench)."""
    files = sorted(((data_dir or shared_data_dir()) / "photos" / "cameras").glob("*.jpg"))
    if split == "train":
        files = [f for i, f in enumerate(files) if i % HELD_OUT_CAMERA_EVERY != HELD_OUT_CAMERA_EVERY - 1]
    elif split == "held-out":
        files = [f for i, f in enumerate(files) if i % HELD_OUT_CAMERA_EVERY == HELD_OUT_CAMERA_EVERY - 1]
    else:
        raise ValueError(f"unknown camera split {split!r}: use 'train' or 'held-out'")
    return [Photo(f, None) for f in files]


def random_crop(rng: np.random.Generator, photo: Photo, size: int, *,
                aligned: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """A size×size crop (image, and segment labels when the photo has them). Photos
    smaller than ``size`` are upscaled first (the caller avoids that where it matters).
    ``aligned``: the crop starts at multiples of 8 (a JPEG keeps its grid phase) and is not flipped."""
    img = load_photo(photo.path)
    seg = load_segments(photo.segments) if photo.segments is not None and photo.segments.exists() else None
    h, w = img.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC)
        seg = None if seg is None else cv2.resize(seg, (nw, nh), interpolation=cv2.INTER_NEAREST)
        h, w = nh, nw
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    if aligned:
        y, x = y // 8 * 8, x // 8 * 8
    crop = img[y:y + size, x:x + size]
    seg = seg[y:y + size, x:x + size] if seg is not None and seg.shape[:2] == (h, w) else None
    if not aligned and rng.random() < 0.5:  # horizontal flip: free augmentation that keeps camera traces
        crop = crop[:, ::-1]
        seg = None if seg is None else seg[:, ::-1]
    return np.ascontiguousarray(crop), None if seg is None else np.ascontiguousarray(seg)
