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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from models.deep_removal import deep_inpaint_removal
from models.operations import (
    _INTERPOLATIONS, OPERATIONS, RETOUCH_RANGES, STAGE1_CLASSES, _u8, jpeg, op_contrast, op_gamma, op_noise,
)
from models.shapes import MIN_INSIDE, alpha_of, blend, random_shape, region, truth_of, uniform_offset
from models.sources import REPO_ROOT, Photo, list_cameras, list_photos, load_photo, random_crop
from spancore.cues import compute_cues

KINDS = ("pristine", "splice", "copy-move", "removal", "retouch", "camera-splice", "deep-inpaint",
         "camera-pristine")
# Share of each kind in stage 2 (pristine about 20%, as the issue asks). camera-splice is off
# here so that earlier configs keep their data stream; the cue configs turn it on. deep-inpaint
# (the DeepFill-style generator, models/deep_removal.py) is off too: a config's kind_weights sets it.
DEFAULT_KIND_WEIGHTS = {"pristine": 0.2, "splice": 0.25, "copy-move": 0.2, "removal": 0.15, "retouch": 0.2}


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


def _place(rng, h: int, w: int, patch: np.ndarray, pmask: np.ndarray, uniform: bool = False):
    """Where an object goes: fully inside the frame, or (``uniform``) anywhere with the frame
    cutting it, keeping at least MIN_INSIDE of it (models.shapes.uniform_offset). Returns the
    object cut to the frame and its top-left corner."""
    ph, pw = pmask.shape
    if uniform:
        for _ in range(8):
            y = int(round(uniform_offset(rng, h, 0, ph)))
            x = int(round(uniform_offset(rng, w, 0, pw)))
            y0, y1, x0, x1 = max(y, 0), min(y + ph, h), max(x, 0), min(x + pw, w)
            kept = pmask[y0 - y:y1 - y, x0 - x:x1 - x]
            if kept.sum() >= max(16.0, MIN_INSIDE * pmask.sum()):
                return patch[y0 - y:y1 - y, x0 - x:x1 - x], kept, y0, x0
    return patch, pmask, int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))


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


def splice(rng, host, donor, donor_seg, history: bool = False, uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An object from another photo (BSDS segment or random shape), scaled, rotated,
    colour-matched, pasted with hard or feathered edges. ``history``: half the time the
    object was JPEG-saved at its own quality first (another compression history).
    ``uniform``: placed anywhere, the frame cutting it (see ``_place``)."""
    h, w = host.shape[:2]
    for _ in range(4):
        omask = region(rng, donor_seg, *donor.shape[:2], 0.02, 0.35, uniform=uniform)
        y0, y1, x0, x1 = _bbox(omask)
        fitted = _fit_object(rng, donor[y0:y1, x0:x1], omask[y0:y1, x0:x1], h, w)
        if fitted is not None:
            break
    else:
        raise RuntimeError("could not cut an object from the donor")
    patch, pmask, y, x = _place(rng, h, w, *fitted, uniform)
    if history and rng.random() < 0.5:  # the donor was saved at its own quality before the paste
        patch = jpeg(patch, int(rng.integers(50, 96)))
    if rng.random() < 0.5:
        patch = _colour_match(rng, patch, pmask, host[y:y + pmask.shape[0], x:x + pmask.shape[1]])
    elif rng.random() < 0.5:
        patch = op_contrast(op_gamma(patch, rng.uniform(0.8, 1.25), rng), rng.uniform(0.85, 1.15), rng)
    return _paste(rng, host, patch, pmask, y, x)


def copy_move(rng, host, seg, uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A region of the same photo moved elsewhere, possibly scaled, rotated or flipped.
    The truth marks the pasted copy (the target), as CASIA and most benchmarks do.
    ``uniform``: source and copy anywhere, the frame cutting them (see ``_place``)."""
    h, w = host.shape[:2]
    for _ in range(8):
        src = region(rng, seg, h, w, 0.01, 0.2, uniform=uniform)
        y0, y1, x0, x1 = _bbox(src)
        fitted = _fit_object(rng, host[y0:y1, x0:x1], src[y0:y1, x0:x1], h, w, 0.01, 0.2, 30.0, 0.3)
        if fitted is None:
            continue
        patch, pmask, y, x = _place(rng, h, w, *fitted, uniform)
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


def removal(rng, host, seg, p_edge: float = 0.0, uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A region filled by OpenCV inpainting (Telea or Navier–Stokes) or a patch-based fill."""
    h, w = host.shape[:2]
    mask = region(rng, seg, h, w, 0.01, 0.12, p_edge, uniform)
    method = rng.choice(["telea", "ns", "patch"])
    if method == "patch":
        alpha = alpha_of(rng, mask, p_feather=0.5)
        return blend(host, patch_fill(rng, host, mask), alpha), truth_of(alpha)
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    filled = cv2.inpaint(host, mask.astype(np.uint8), float(rng.uniform(3, 9)), flag)
    return filled, mask  # inpaint changes only the hole


def retouch(rng, host, seg, p_edge: float = 0.0, uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One local operation (blur, sharpen, median, noise, gamma, contrast, colour, resampling) inside a region."""
    h, w = host.shape[:2]
    mask = region(rng, seg, h, w, 0.02, 0.4, p_edge, uniform)
    name = str(rng.choice(list(RETOUCH_RANGES)))
    lo, hi = RETOUCH_RANGES[name]
    value = float(rng.choice(np.arange(int(lo), int(hi) + 1, 2))) if name == "median" else float(rng.uniform(lo, hi))
    if name == "gamma" and 0.85 < value < 1.2:  # too close to identity to be an edit
        value = 0.7 if value < 1 else 1.4
    alpha = alpha_of(rng, mask)
    return blend(host, OPERATIONS[name](host, value, rng), alpha), truth_of(alpha)


def camera_splice(rng, host: np.ndarray, donor: np.ndarray, p_edge: float = 0.0,
                  uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A region of another camera's photo pasted into this one at the same place, nothing
    resampled: the pasted (smaller) region carries another camera's noise, demosaicing and
    JPEG history, on a grid shifted against the host's whenever the donor crop was. Both
    crops come from native camera JPEGs (see ``synthesize``)."""
    h, w = host.shape[:2]
    mask = random_shape(rng, h, w, math.exp(rng.uniform(math.log(0.02), math.log(0.3))), p_edge, uniform)
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
    # "inside": objects fully inside the frame, random shapes too unless p_edge puts them on
    # the edge; "uniform": every edit anywhere, cut by the frame wherever it falls, so the
    # border is edited as often as the centre (the dark-border fix, weights/README.md)
    placement: str = "inside"

    def __post_init__(self):
        if self.placement not in ("inside", "uniform"):
            raise ValueError(f"placement must be 'inside' or 'uniform', not {self.placement!r}")

    @property
    def uniform(self) -> bool:
        return self.placement == "uniform"


def synthesize(rng: np.random.Generator, photos: list[Photo], size: int, kind: str,
               post: PostProcessing | None = PostProcessing(), recipe: Recipe = Recipe(),
               cameras: str = "train") -> Forgery:
    """One training pair of the given kind. With ``post=None`` the frame is returned
    as edited (no resize, noise or JPEG), which tests and figures use. ``cameras``: the
    split of photos/cameras that camera kinds draw from (models.sources.list_cameras)."""
    canvas = size
    factor = 1.0
    if post is not None and rng.random() < post.p_resize:
        factor = rng.uniform(*post.resize_range)
        canvas = max(size // 2, round(size / factor))
    if kind in ("camera-splice", "camera-pristine"):
        return _synthesize_camera_splice(rng, size, post, recipe, edit=kind == "camera-splice", cameras=cameras)
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
        image, mask = splice(rng, host, donor, donor_seg, recipe.splice_history, recipe.uniform)
    elif kind == "copy-move":
        image, mask = copy_move(rng, host, seg, recipe.uniform)
    elif kind == "removal":
        image, mask = removal(rng, host, seg, recipe.p_edge, recipe.uniform)
    elif kind == "retouch":
        image, mask = retouch(rng, host, seg, recipe.p_edge, recipe.uniform)
    elif kind == "deep-inpaint":
        image, mask = deep_inpaint_removal(rng, host, seg, recipe.uniform)
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    original = host
    if post is not None:
        image, mask, original = post_process(rng, image, mask, original, size, post)
    return Forgery(image, mask.astype(np.float32), kind, original)


def _synthesize_camera_splice(rng, size: int, post: PostProcessing | None, recipe: Recipe,
                              edit: bool = True, cameras: str = "train") -> Forgery:
    """Host and donor from two different cameras' native JPEGs (photos/cameras, training 4 in
    5), the host crop on its own 8x8 grid, the donor crop anywhere; the composite saved as a
    JPEG on the host's grid (as an editor saves it) with post.p_jpeg, else left as pixels.
    No resize: resampling would erase the very traces that tell the sources apart.
    ``edit=False`` is the pristine counterpart ("camera-pristine"): the same host crop and
    re-save with nothing pasted, so an untouched camera photo (what most pristine uploads
    are) is a negative too, not only the scanned and re-saved collections."""
    photos = _camera_photos(cameras)
    a, b = rng.choice(len(photos), size=2, replace=False)
    host, _ = random_crop(rng, photos[int(a)], size, aligned=True)
    if edit:
        donor, _ = random_crop(rng, photos[int(b)], size, aligned=rng.random() < 0.2)
        image, mask = camera_splice(rng, host, donor, recipe.p_edge, recipe.uniform)
    else:
        image, mask = host, np.zeros(host.shape[:2], np.float32)
    if post is not None and rng.random() < post.p_jpeg:
        image = jpeg(image, int(rng.integers(max(70, post.jpeg_quality[0]), post.jpeg_quality[1] + 1)))
    return Forgery(image, mask.astype(np.float32), "camera-splice" if edit else "camera-pristine", host)


@functools.lru_cache(maxsize=None)
def _camera_photos(split: str = "train") -> tuple[Photo, ...]:
    return tuple(list_cameras(split))


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
                 data_dir: Path | None = None, recipe: Recipe = Recipe(), cues: bool = False,
                 cameras: str = "train"):
        # BSDS photos are 481x321: patches up to 320 px never upscale them; larger patches
        # upscale small photos (a global resampling, like the post-processing resize).
        self.photos = list_photos(split, data_dir, min_side=min(size, 320))
        self.size, self.length, self.seed, self.post = size, length, seed, post
        self.recipe, self.cues, self.cameras = recipe, cues, cameras
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
                return synthesize(rng, self.photos, self.size, kind, self.post, self.recipe, self.cameras)
            except RuntimeError:
                continue
        fallback = "camera-pristine" if kind.startswith("camera") else "pristine"
        return synthesize(rng, self.photos, self.size, fallback, self.post, self.recipe, self.cameras)

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
