"""On-the-fly forgery synthesis from real photos.

Two datasets, both deterministic given a seed (sample ``i`` of seed ``s`` is the
same on every machine, in every worker, after every resume):

- :class:`ForgeryDataset` (stage 2, localisation): ``(image 3×P×P float 0..255,
  mask 1×P×P float {0,1}, kind)`` where kind is one of :data:`KINDS`:
  splice, copy-move, removal, local retouching, or pristine (empty mask), each
  followed by the post-processing forgeries meet in the wild (resizing, mild
  noise, JPEG recompression, double compression with misaligned grids).
- :class:`ManipulationTypeDataset` (stage 1, Featex pretraining as ManTra-Net):
  ``(image, class)`` where the class names the operation and its parameter range
  (:data:`STAGE1_CLASSES`), applied to the whole patch or to one half of it.

Sources: BSDS500 train (with its human segmentations, for object-shaped masks),
Sun–Hays 80, Urban100 and the camera files of ``exif-samples`` for training;
BSDS500 val for validation. BSDS500 test is never listed, so never read.

Everything below works on uint8 HxWx3 RGB numpy arrays and float32 HxW masks;
only the two Dataset classes touch torch.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from spancore.cues import compute_cues

try:  # the camera sources include HEIC/HEIF phone photos
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # e.g. the GPU machine's image: HEIC files are then skipped as unreadable
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]

KINDS = ("pristine", "splice", "copy-move", "removal", "retouch", "camera-splice")
# Share of each kind in stage 2 (pristine about 20%, as the issue asks). camera-splice is off
# here so that earlier configs keep their data stream; the cue configs turn it on.
DEFAULT_KIND_WEIGHTS = {"pristine": 0.2, "splice": 0.25, "copy-move": 0.2, "removal": 0.15, "retouch": 0.2}

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".heic", ".heif"}
# exif-samples folders/files with broken or hostile metadata: test material, not photos.
EXCLUDED_EXIF = ("jpg/corrupted.jpg", "jpg/invalid/", "jpg/tests/")
# Large camera files are cropped (never resized: resampling would erase their traces)
# to this side once on load, so a worker's cache stays small.
MAX_SOURCE_SIDE = 1024
FEATHER_MAX_RADIUS = 6  # px: a feathered edge never reaches further than this outside the mask


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


# ----------------------------------------------------------------------------- region shapes

def random_shape(rng: np.random.Generator, h: int, w: int, area: float, p_edge: float = 0.0) -> np.ndarray:
    """A binary float mask of roughly ``area`` (fraction of h*w): a smooth random blob,
    an ellipse or a rotated rectangle, at a random position fully inside the frame or, with
    probability ``p_edge``, cut by the frame's edge (real edits touch borders too)."""
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
    cx = rng.uniform(-lo[0], w - hi[0]) if w - hi[0] > -lo[0] else w / 2
    cy = rng.uniform(-lo[1], h - hi[1]) if h - hi[1] > -lo[1] else h / 2
    if p_edge and rng.random() < p_edge:  # centre on a random point of the frame's edge band
        if rng.random() < 0.5:
            cx = float(rng.choice([rng.uniform(0, 0.15 * w), rng.uniform(0.85 * w, w)]))
        else:
            cy = float(rng.choice([rng.uniform(0, 0.15 * h), rng.uniform(0.85 * h, h)]))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts + [cx, cy]).astype(np.int32)], 1)
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
           p_edge: float = 0.0) -> np.ndarray:
    """A manipulation region: a segmented object when available (60%), else a random shape."""
    if seg is not None and rng.random() < 0.6:
        m = segment_shape(rng, seg, lo, hi)
        if m is not None:
            return m
    return random_shape(rng, h, w, math.exp(rng.uniform(math.log(lo), math.log(hi))), p_edge)


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


def half_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One of the four halves of the frame, as a binary float mask."""
    m = np.zeros((h, w), np.float32)
    side = int(rng.integers(4))
    if side == 0:
        m[: h // 2] = 1
    elif side == 1:
        m[h // 2:] = 1
    elif side == 2:
        m[:, : w // 2] = 1
    else:
        m[:, w // 2:] = 1
    return m


def labelled_patch(rng: np.random.Generator, photos: list[Photo], size: int, half_prob: float = 0.3,
                   label: int | None = None) -> tuple[np.ndarray, int]:
    """Stage 1: a pristine crop with one operation (a class of STAGE1_CLASSES) applied
    to all of it or, with ``half_prob``, to one half of it. ``label`` forces the class
    (the crop drawn from ``rng`` is the same either way)."""
    img, _ = random_crop(rng, photos[int(rng.integers(len(photos)))], size)
    drawn = int(rng.integers(len(STAGE1_CLASSES)))
    label = drawn if label is None else label
    cls = STAGE1_CLASSES[label]
    if cls.op is None:
        return img, label
    edited = OPERATIONS[cls.op](img, cls.sample(rng), rng)
    if rng.random() < half_prob:
        edited = blend(img, edited, half_mask(rng, size, size))
    return edited, label


# ----------------------------------------------------------------------------- forgeries

@dataclass
class Forgery:
    image: np.ndarray      # uint8 H×W×3
    mask: np.ndarray       # float32 H×W, 1 = manipulated
    kind: str
    original: np.ndarray   # the host before the edit (same frame), for tests and figures


def _transform_object(rng, patch: np.ndarray, mask: np.ndarray, scale: float, angle: float, flip: bool):
    """Scale/rotate/flip an object patch and its mask together (mask stays aligned)."""
    if flip:
        patch, mask = patch[:, ::-1], mask[:, ::-1]
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = max(1, int(math.ceil(h * sin + w * cos))), max(1, int(math.ceil(h * cos + w * sin)))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    interp = int(rng.choice(_INTERPOLATIONS[:2]))
    patch = cv2.warpAffine(np.ascontiguousarray(patch), m, (nw, nh), flags=interp, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    return patch, (mask >= 0.5).astype(np.float32)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask >= 0.5)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _paste(rng, host: np.ndarray, patch: np.ndarray, pmask: np.ndarray, y: int, x: int):
    """Blend an object (patch + binary mask) into host at (y, x). Returns (image, truth)."""
    h, w = host.shape[:2]
    ph, pw = pmask.shape
    full = np.zeros((h, w), np.float32)
    full[y:y + ph, x:x + pw] = pmask
    layer = host.copy()
    layer[y:y + ph, x:x + pw] = patch
    alpha = alpha_of(rng, full)  # a feathered edge spills a few px; outside the rectangle layer == host
    return blend(host, layer, alpha), truth_of(alpha)


def _colour_match(rng, patch: np.ndarray, pmask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Move the object's Lab statistics towards the destination's, as a careful forger would."""
    sel = pmask >= 0.5
    if sel.sum() < 16:
        return patch
    src = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    dst = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32).reshape(-1, 3)
    s_mean, s_std = src[sel].mean(0), src[sel].std(0) + 1e-3
    d_mean, d_std = dst.mean(0), dst.std(0) + 1e-3
    t = rng.uniform(0.5, 1.0)  # partial matching: forgers rarely match perfectly
    out = (src - s_mean) * (1 - t + t * d_std / s_std) + (1 - t) * s_mean + t * d_mean
    return cv2.cvtColor(_u8(out), cv2.COLOR_LAB2RGB)


def _place(rng, h: int, w: int, ph: int, pw: int) -> tuple[int, int]:
    return int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))


def _fit_object(rng, patch, pmask, h, w, area_lo=0.01, area_hi=0.3, max_angle=45.0, p_rotate=0.4):
    """Random scale (towards a target area), rotation and flip; shrunk to fit the frame."""
    area = pmask.sum() / (h * w)
    target = math.exp(rng.uniform(math.log(area_lo), math.log(area_hi)))
    scale = float(np.clip(math.sqrt(target / max(area, 1e-6)), 0.4, 2.0))
    angle = rng.uniform(-max_angle, max_angle) if rng.random() < p_rotate else 0.0
    patch, pmask = _transform_object(rng, patch, pmask, scale, angle, bool(rng.random() < 0.3))
    if pmask.sum() < 16:
        return None
    y0, y1, x0, x1 = _bbox(pmask)
    patch, pmask = patch[y0:y1, x0:x1], pmask[y0:y1, x0:x1]
    ph, pw = pmask.shape
    shrink = min(1.0, 0.95 * h / ph, 0.95 * w / pw)
    if shrink < 1:
        nh, nw = max(1, int(ph * shrink)), max(1, int(pw * shrink))
        patch = cv2.resize(patch, (nw, nh), interpolation=cv2.INTER_AREA)
        pmask = (cv2.resize(pmask, (nw, nh), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
    return (patch, pmask) if pmask.sum() >= 16 else None


def splice(rng, host, donor, donor_seg, history: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An object from another photo (BSDS segment or random shape), scaled, rotated,
    colour-matched, pasted with hard or feathered edges. ``history``: half the time the
    object was JPEG-saved at its own quality first (another compression history)."""
    h, w = host.shape[:2]
    for _ in range(4):
        omask = region(rng, donor_seg, *donor.shape[:2], 0.02, 0.35)
        y0, y1, x0, x1 = _bbox(omask)
        fitted = _fit_object(rng, donor[y0:y1, x0:x1], omask[y0:y1, x0:x1], h, w)
        if fitted is not None:
            break
    else:
        raise RuntimeError("could not cut an object from the donor")
    patch, pmask = fitted
    y, x = _place(rng, h, w, *pmask.shape)
    if history and rng.random() < 0.5:  # the donor was saved at its own quality before the paste
        patch = jpeg(patch, int(rng.integers(50, 96)))
    if rng.random() < 0.5:
        patch = _colour_match(rng, patch, pmask, host[y:y + pmask.shape[0], x:x + pmask.shape[1]])
    elif rng.random() < 0.5:
        patch = op_contrast(op_gamma(patch, rng.uniform(0.8, 1.25), rng), rng.uniform(0.85, 1.15), rng)
    return _paste(rng, host, patch, pmask, y, x)


def copy_move(rng, host, seg) -> tuple[np.ndarray, np.ndarray]:
    """A region of the same photo moved elsewhere, possibly scaled, rotated or flipped.
    The truth marks the pasted copy (the target), as CASIA and most benchmarks do."""
    h, w = host.shape[:2]
    for _ in range(8):
        src = region(rng, seg, h, w, 0.01, 0.2)
        y0, y1, x0, x1 = _bbox(src)
        fitted = _fit_object(rng, host[y0:y1, x0:x1], src[y0:y1, x0:x1], h, w, 0.01, 0.2, 30.0, 0.3)
        if fitted is None:
            continue
        patch, pmask = fitted
        y, x = _place(rng, h, w, *pmask.shape)
        if abs(y - y0) + abs(x - x0) >= 8:  # a copy onto itself is no copy-move
            return _paste(rng, host, patch, pmask, y, x)
    raise RuntimeError("could not place a copy-move region")


def patch_fill(rng, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exemplar fill: copy the whole hole from the shift whose surroundings match best
    (sum of squared differences on a ring around the hole), like a clone-stamp removal."""
    h, w = mask.shape
    y0, y1, x0, x1 = _bbox(mask)
    ring = cv2.dilate(mask, np.ones((9, 9), np.uint8)) - mask > 0
    ry, rx = np.nonzero(ring)
    f = img.astype(np.float32)
    best, best_cost = None, np.inf
    for _ in range(24):
        dy, dx = int(rng.integers(-y0, h - y1 + 1)), int(rng.integers(-x0, w - x1 + 1))
        if abs(dy) < (y1 - y0) and abs(dx) < (x1 - x0):  # source must not overlap the hole
            continue
        sy, sx = np.clip(ry + dy, 0, h - 1), np.clip(rx + dx, 0, w - 1)
        cost = float(((f[ry, rx] - f[sy, sx]) ** 2).mean())
        if cost < best_cost:
            best, best_cost = (dy, dx), cost
    if best is None:
        return cv2.inpaint(img, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    dy, dx = best
    return np.roll(img, (-dy, -dx), axis=(0, 1))  # pixel (y, x) takes (y+dy, x+dx); only the hole is kept by the caller


def removal(rng, host, seg, p_edge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A region filled by OpenCV inpainting (Telea or Navier–Stokes) or a patch-based fill."""
    h, w = host.shape[:2]
    mask = region(rng, seg, h, w, 0.01, 0.12, p_edge)
    method = rng.choice(["telea", "ns", "patch"])
    if method == "patch":
        alpha = alpha_of(rng, mask, p_feather=0.5)
        return blend(host, patch_fill(rng, host, mask), alpha), truth_of(alpha)
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    filled = cv2.inpaint(host, mask.astype(np.uint8), float(rng.uniform(3, 9)), flag)
    return filled, mask  # inpaint changes only the hole


def retouch(rng, host, seg, p_edge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One local operation (blur, sharpen, median, noise, gamma, contrast, colour, resampling) inside a region."""
    h, w = host.shape[:2]
    mask = region(rng, seg, h, w, 0.02, 0.4, p_edge)
    name = str(rng.choice(list(RETOUCH_RANGES)))
    lo, hi = RETOUCH_RANGES[name]
    value = float(rng.choice(np.arange(int(lo), int(hi) + 1, 2))) if name == "median" else float(rng.uniform(lo, hi))
    if name == "gamma" and 0.85 < value < 1.2:  # too close to identity to be an edit
        value = 0.7 if value < 1 else 1.4
    alpha = alpha_of(rng, mask)
    return blend(host, OPERATIONS[name](host, value, rng), alpha), truth_of(alpha)


def camera_splice(rng, host: np.ndarray, donor: np.ndarray, p_edge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A region of another camera's photo pasted into this one at the same place, nothing
    resampled: the pasted (smaller) region carries another camera's noise, demosaicing and
    JPEG history, on a grid shifted against the host's whenever the donor crop was. Both
    crops come from native camera JPEGs (see ``synthesize``)."""
    h, w = host.shape[:2]
    mask = random_shape(rng, h, w, math.exp(rng.uniform(math.log(0.02), math.log(0.3))), p_edge)
    if mask.sum() < 16:
        mask = random_shape(rng, h, w, 0.1)
    if rng.random() < 0.3:
        donor = _colour_match(rng, donor, mask, host)
    alpha = alpha_of(rng, mask, p_feather=0.3)
    return blend(host, donor, alpha), truth_of(alpha)


@dataclass(frozen=True)
class PostProcessing:
    """What happens to a forgery (or a pristine photo) after the edit, as in the wild."""
    p_resize: float = 0.4
    resize_range: tuple[float, float] = (0.6, 1.3)
    p_noise: float = 0.15
    p_prior_jpeg: float = 0.3     # host already JPEG'd on a grid misaligned with the final one
    p_jpeg: float = 0.75
    jpeg_quality: tuple[int, int] = (55, 100)


@dataclass(frozen=True)
class Recipe:
    """Choices of the edit itself that later configs turn on (defaults: the original stream)."""
    splice_history: bool = False  # splice: half the donors JPEG-saved at their own quality first
    p_edge: float = 0.0           # removal/retouch/camera-splice regions cut by the frame edge


def synthesize(rng: np.random.Generator, photos: list[Photo], size: int, kind: str,
               post: PostProcessing | None = PostProcessing(), recipe: Recipe = Recipe()) -> Forgery:
    """One training pair of the given kind. With ``post=None`` the frame is returned
    as edited (no resize, noise or JPEG), which tests and figures use."""
    canvas = size
    factor = 1.0
    if post is not None and rng.random() < post.p_resize:
        factor = rng.uniform(*post.resize_range)
        canvas = max(size // 2, round(size / factor))
    if kind == "camera-splice":
        return _synthesize_camera_splice(rng, size, post, recipe.p_edge)
    photo = photos[int(rng.integers(len(photos)))]
    h0, w0 = load_photo(photo.path).shape[:2]
    canvas = min(canvas, h0, w0) if min(h0, w0) >= size else size  # never upscale the host just to shrink it again
    host, seg = random_crop(rng, photo, canvas)
    if post is not None and rng.random() < post.p_prior_jpeg:
        host = jpeg(host, int(rng.integers(60, 96)), (int(rng.integers(1, 8)), int(rng.integers(1, 8))))
    if kind == "pristine":
        image, mask = host, np.zeros(host.shape[:2], np.float32)
    elif kind == "splice":
        donor_photo = photos[int(rng.integers(len(photos)))]
        donor, donor_seg = random_crop(rng, donor_photo, min(canvas, *load_photo(donor_photo.path).shape[:2]))
        image, mask = splice(rng, host, donor, donor_seg, recipe.splice_history)
    elif kind == "copy-move":
        image, mask = copy_move(rng, host, seg)
    elif kind == "removal":
        image, mask = removal(rng, host, seg, recipe.p_edge)
    elif kind == "retouch":
        image, mask = retouch(rng, host, seg, recipe.p_edge)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    original = host
    if post is not None:
        image, mask, original = post_process(rng, image, mask, original, size, post)
    return Forgery(image, mask.astype(np.float32), kind, original)


def _synthesize_camera_splice(rng, size: int, post: PostProcessing | None, p_edge: float) -> Forgery:
    """Host and donor from two different cameras' native JPEGs (photos/cameras, training 4 in
    5), the host crop on its own 8x8 grid, the donor crop anywhere; the composite saved as a
    JPEG on the host's grid (as an editor saves it) with post.p_jpeg, else left as pixels.
    No resize: resampling would erase the very traces that tell the sources apart."""
    cameras = _camera_photos()
    a, b = rng.choice(len(cameras), size=2, replace=False)
    host, _ = random_crop(rng, cameras[int(a)], size, aligned=True)
    donor, _ = random_crop(rng, cameras[int(b)], size, aligned=rng.random() < 0.2)
    image, mask = camera_splice(rng, host, donor, p_edge)
    if post is not None and rng.random() < post.p_jpeg:
        image = jpeg(image, int(rng.integers(max(70, post.jpeg_quality[0]), post.jpeg_quality[1] + 1)))
    return Forgery(image, mask.astype(np.float32), "camera-splice", host)


@functools.lru_cache(maxsize=None)
def _camera_photos() -> tuple[Photo, ...]:
    return tuple(list_cameras("train"))


def post_process(rng, image, mask, original, size: int, post: PostProcessing):
    """Resize to the patch size (mask resized with it and re-binarised: it stays aligned),
    mild noise, then JPEG (the final save of the forger)."""
    if image.shape[0] != size or image.shape[1] != size:
        interp = int(rng.choice(_INTERPOLATIONS))
        image = cv2.resize(image, (size, size), interpolation=interp)
        original = cv2.resize(original, (size, size), interpolation=interp)
        mask = (cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
    if rng.random() < post.p_noise:
        image = op_noise(image, rng.uniform(0.5, 2.5), rng)
    if rng.random() < post.p_jpeg:
        image = jpeg(image, int(rng.integers(post.jpeg_quality[0], post.jpeg_quality[1] + 1)))
    return image, mask, original


# ----------------------------------------------------------------------------- torch datasets

def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, index), so workers,
    resumes and machines all see the same data."""
    return np.random.default_rng([seed, index])


class ForgeryDataset(torch.utils.data.Dataset):
    """Stage 2 pairs: ``(image 3×P×P float 0..255, mask 1×P×P float {0,1}, kind index)``; with
    ``cues=True``, ``(image, cues C×P/8×P/8 float, mask, kind)`` (spancore.cues of the final image)."""

    def __init__(self, split: str = "train", size: int = 256, length: int = 100_000, seed: int = 0,
                 kind_weights: dict[str, float] | None = None, post: PostProcessing | None = PostProcessing(),
                 data_dir: Path | None = None, recipe: Recipe = Recipe(), cues: bool = False):
        # BSDS photos are 481x321: patches up to 320 px never upscale them; larger patches
        # upscale small photos (a global resampling, like the post-processing resize).
        self.photos = list_photos(split, data_dir, min_side=min(size, 320))
        self.size, self.length, self.seed, self.post = size, length, seed, post
        self.recipe, self.cues = recipe, cues
        weights = kind_weights or DEFAULT_KIND_WEIGHTS
        self.kinds = [k for k in KINDS if weights.get(k, 0) > 0]
        p = np.array([weights[k] for k in self.kinds], np.float64)
        self.kind_p = p / p.sum()

    def __len__(self) -> int:
        return self.length

    def forgery(self, index: int) -> Forgery:
        rng = sample_rng(self.seed, index)
        kind = str(rng.choice(self.kinds, p=self.kind_p))
        for attempt in range(4):  # a rare placement failure retries with the same rng stream
            try:
                return synthesize(rng, self.photos, self.size, kind, self.post, self.recipe)
            except RuntimeError:
                continue
        return synthesize(rng, self.photos, self.size, "pristine", self.post, self.recipe)

    def __getitem__(self, index: int):
        f = self.forgery(index)
        image, mask, kind = _to_tensor(f.image), torch.from_numpy(f.mask)[None], KINDS.index(f.kind)
        if self.cues:
            return image, torch.from_numpy(compute_cues(f.image)), mask, kind
        return image, mask, kind


class ManipulationTypeDataset(torch.utils.data.Dataset):
    """Stage 1 patches: ``(image 3×P×P float 0..255, class index into STAGE1_CLASSES)``."""

    def __init__(self, split: str = "train", size: int = 256, length: int = 100_000, seed: int = 0,
                 half_prob: float = 0.3, data_dir: Path | None = None):
        self.photos = list_photos(split, data_dir, min_side=size)
        self.size, self.length, self.seed, self.half_prob = size, length, seed, half_prob

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        img, label = labelled_patch(sample_rng(self.seed, index), self.photos, self.size, self.half_prob)
        return _to_tensor(img), label


def worker_init(worker_id: int) -> None:
    """DataLoader workers: one OpenCV thread each (the training process owns the cores)."""
    cv2.setNumThreads(1)


# ----------------------------------------------------------------------------- figure

def render_samples(path: Path, per_kind: int = 4, tile: int = 160, seed: int = 7, split: str = "val") -> Path:
    """A grid, one row per kind: (image | mask) pairs, the mask outlined on the image too."""
    from PIL import ImageDraw

    photos = list_photos(split, min_side=256)
    rows = []
    for r, kind in enumerate(KINDS):
        cells = []
        for i in range(per_kind):
            rng = sample_rng(seed, r * 100 + i)
            f = synthesize(rng, photos, 256, kind)
            img = cv2.resize(f.image, (tile, tile), interpolation=cv2.INTER_AREA)
            m = cv2.resize(f.mask, (tile, tile), interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours((m >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            img = cv2.drawContours(img.copy(), contours, -1, (255, 40, 40), 1)
            cells += [img, np.repeat((m * 255).astype(np.uint8)[..., None], 3, 2)]
            cells.append(np.full((tile, 6, 3), 255, np.uint8))
        rows.append(np.concatenate(cells[:-1], 1))
    label_w = 90
    grid = Image.new("RGB", (label_w + rows[0].shape[1], len(rows) * (tile + 6)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (kind, row) in enumerate(zip(KINDS, rows)):
        grid.paste(Image.fromarray(row), (label_w, r * (tile + 6)))
        draw.text((6, r * (tile + 6) + tile // 2 - 6), kind, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    return path


if __name__ == "__main__":  # python -m models.synthesis docs/synthesis-samples.png
    import sys

    print(render_samples(Path(sys.argv[1] if len(sys.argv) > 1 else REPO_ROOT / "docs" / "synthesis-samples.png")))
