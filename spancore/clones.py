"""Clones: parts of a photo copied onto the photo itself by a plain translation.

A copy-move moves pixels within one photo, so the copy carries the same camera and
compression history as its host and the fixed cues (spancore.cues) cannot tell it apart; the
model's map scores a copy-moved photo and its original alike (weights/README.md). What the
copy does carry is its source's sensor noise, pixel for pixel. So:

1. The high-pass residual of the luma (luma minus its Gaussian blur, sigma 1; clipped to a
   robust range so that edges do not dominate) is correlated with itself at every shift at
   once (one FFT). A copy moved by a shift ``s`` adds a peak there; each shift's sum is
   normalised by its overlap, and the strongest shifts at least ``MIN_SHIFT`` px long are
   kept, from the plain correlation and from a whitened one (candidate_shifts). A lossless
   copy too small or too flat to lift that peak still repeats its source bit for bit: the
   shifts at which many textured 8x8 blocks repeat exactly are candidates too
   (exact_repeat_shifts).
2. For each candidate, the zero-mean local correlation (ZNCC over ``WINDOW`` x ``WINDOW``
   windows) between the residual at p and at p + s says *where* the shift holds. A copy
   repeats its source's noise exactly (lossless) or nearly (re-saved as a good JPEG), so the
   correlation there is near 1. Fridrich et al. (2003) looked for exact block matches; the
   residual is what makes this one tolerant of re-compression and blind to mere look-alikes.
   A JPEG below quality ~90 quantises that fine noise differently on the two copies (they sit
   at different phases of the 8x8 grid), so a candidate the fine band rejects is looked at
   again in a coarser band (blur at sigma 1 minus blur at ``COARSE_SIGMA``), which such a JPEG
   keeps, with stricter bars, since look-alike content correlates there more often (the
   ``COARSE_*`` constants; its first look also applies step 3's tests to whole blocks).
3. What else repeats is ruled out (_copy_region): a straight edge or a line pattern, which
   matches itself all along its length (the shift moved a few px must correlate clearly
   less), and a periodic texture (tiles, a facade's windows, a border pattern), which repeats
   at -s and 2s as well as at s.
4. A candidate is a clone when at least ``MIN_AREA`` pixels (``MIN_AREA_FRACTION`` of a large
   photo) are left, in a compact region, with a median correlation of ``MIN_CLONE_CORRELATION``.
   Both copies are marked: the residual cannot say which one is the original.

Every threshold was set on synthetic copy-move pairs and the shared untouched photos
(bench/clones.py; the figures are in README, "Clones").

It finds translated copies only: a copy that was scaled, rotated or flipped has no single
shift (the keypoint pass of the copy-move layer, service/layers/copy_move.py, looks for
those). Photos above ``MAX_PIXELS`` are binned by an integer factor first, which weakens the
noise a copy carries (a shift that is not a multiple of the factor lands between bins).

numpy only: the service's default path runs it on every photo.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLONES_VERSION", "Clone", "CloneResult", "find_clones", "fold_in"]

CLONES_VERSION = "residual-shift-v2"  # v2: the coarse band for re-compressed copies, exact-repeat candidates
MAX_PIXELS = 2 * 1024 * 1024  # larger photos are binned to at most this many pixels first
RESIDUAL_SIGMA = 1.0
COARSE_SIGMA = 3.0  # the coarse band: blur at RESIDUAL_SIGMA minus blur at this (_residuals)
CLIP_SIGMAS = 3.0  # residuals clipped at this many robust sigmas
CANDIDATES = 6  # shifts examined per photo from the plain self-correlation, strongest first
WHITENED_CANDIDATES = 6  # and from the whitened one (candidate_shifts)
WHITEN_BINS = 4
WHITEN_CLIP = 4.0
MIN_SHIFT = 16  # px: shorter shifts are one region overlapping itself
MIN_OVERLAP = 64 * 64  # px: shifts whose overlap is smaller are not examined
WINDOW = 15  # px: side of the local correlation's window
ENERGY_FLOOR = 0.25  # a window needs this fraction of the photo's mean residual energy on both sides
MIN_CORRELATION = 0.85  # a pixel's window is marked at this local correlation
MIN_CLONE_CORRELATION = 0.93  # a clone is reported when its marked pixels' median reaches this (bench.clones)
APERTURE_OFFSETS = ((0, 3), (3, 0), (2, 2), (2, -2))  # px: the shift moved along four directions (_copy_region)
APERTURE_MARGIN = 0.3
PERIODIC_RATIO = 0.5  # a candidate whose region correlates this much at -shift or 2 x shift is a texture
COMPACT = 0.5  # a marked pixel needs this fraction of its window marked too (drops scattered pixels)
BLOCK = 8  # px: the first look's blocks (_blocks_repeat)
BLOCK_SCREEN = 0.9  # the fine band: one block correlating this well lets a candidate through
# The coarse band holds content as well as noise: many blocks of any two places correlate in it,
# so it asks for more, and stronger, and applies the 3-px test to blocks too (a re-compressed
# copy's blocks correlate ~0.98 there; on bench.clones-style JPEG pairs 97 % of true shifts
# have 4 such blocks, against ~22 % of other candidates before the 3-px test).
COARSE_BLOCK_SCREEN = 0.97
COARSE_MIN_BLOCKS = 4
# ...and a clone found in it must correlate more (re-compressed copies reach 0.97-0.999 there;
# a facade's repeated panels in perspective 0.945-0.98, out of reach of the periodicity test).
COARSE_MIN_CLONE_CORRELATION = 0.97
COARSE_MIN_AREA_FRACTION = 0.001  # and twice the area (a facade's panels matched over 0.07 % of a photo)
PERIODIC_SLACK = 2  # px: the coarse band's first look seeks -shift and 2 x shift within this (_blocks_repeat)
EXACT_BLOCK = 8  # px: exact_repeat_shifts' blocks
EXACT_MIN_BLOCKS = 40  # block positions that must repeat at one shift for it to become a candidate
EXACT_MAX_REPEATS = 4  # a block value shared by more blocks than this is a pattern, not a copy
EXACT_CANDIDATES = 4
MIN_AREA = 400  # px (at working scale)
MIN_AREA_FRACTION = 0.0005


@dataclass(frozen=True)
class Clone:
    """One translated copy: the pixels at p + shift repeat the pixels at p."""
    shift: tuple[int, int]  # (dy, dx) in photo pixels
    area_fraction: float  # of the photo, one copy (the marked region is both)
    correlation: float  # median local residual correlation inside the copy

    def as_json(self) -> dict:
        return {"shift": [self.shift[1], self.shift[0]], "area_fraction": round(self.area_fraction, 5),
                "correlation": round(self.correlation, 4)}


@dataclass
class CloneResult:
    clones: list[Clone] = field(default_factory=list)
    mask: np.ndarray | None = None  # bool [H, W] at photo size: both copies of every clone
    scale: int = 1  # the binning factor the search ran at

    @property
    def found(self) -> bool:
        return bool(self.clones)

    @property
    def confidence(self) -> float:
        """0 when nothing is found, else the strongest clone's correlation (MIN_CLONE_CORRELATION..1)."""
        return max((clone.correlation for clone in self.clones), default=0.0)

    def as_json(self) -> dict:
        return {"found": self.found, "version": CLONES_VERSION, "scale": self.scale,
                "clones": [clone.as_json() for clone in self.clones]}


class _Band:
    """One residual band, what every candidate's test reads of it, and its first look's bar
    (_blocks_repeat)."""

    def __init__(self, residual: np.ndarray, screen: float, min_blocks: int, block_tests: bool,
                 min_clone_correlation: float, min_area_fraction: float):
        self.residual, self.screen, self.min_blocks, self.block_tests = residual, screen, min_blocks, block_tests
        self.min_clone_correlation = min_clone_correlation
        self.min_area = max(MIN_AREA, min_area_fraction * residual.size)  # px at working scale
        self.energy = float(np.mean(residual * residual))
        self.floor = ENERGY_FLOOR * self.energy * WINDOW * WINDOW

    @functools.cached_property
    def local_energy(self) -> np.ndarray:
        """Residual energy summed over each pixel's window; made when first read (the coarse
        band's often is not: no candidate passes its first look)."""
        return _box(self.residual * self.residual)


def find_clones(rgb: np.ndarray) -> CloneResult:
    """Translated copies in a uint8 RGB photo [H, W, 3] (module docstring)."""
    height, width = rgb.shape[:2]
    scale = max(1, math.ceil(math.sqrt(height * width / MAX_PIXELS)))
    if scale > 1:
        # Bin the uint8 pixels first: a float copy of a 50 MP photo would be 1.2 GB per image in flight.
        pixels = _binned(np.asarray(rgb), scale)
        luma = _luma(pixels) / (scale * scale)
    else:
        pixels = np.asarray(rgb)
        luma = _luma(pixels)
    fine_residual, coarse_residual = _residuals(luma)
    fine = _Band(fine_residual, BLOCK_SCREEN, 1, block_tests=False, min_clone_correlation=MIN_CLONE_CORRELATION,
                 min_area_fraction=MIN_AREA_FRACTION)
    coarse = _Band(coarse_residual, COARSE_BLOCK_SCREEN, COARSE_MIN_BLOCKS, block_tests=True,
                   min_clone_correlation=COARSE_MIN_CLONE_CORRELATION, min_area_fraction=COARSE_MIN_AREA_FRACTION)
    result = CloneResult(mask=np.zeros((height, width), bool), scale=scale)
    if fine.energy <= 1e-12 or min(fine.residual.shape) < 2 * WINDOW:
        return result
    small_mask = np.zeros(fine.residual.shape, bool)
    shifts = candidate_shifts(fine.residual)
    shifts += [shift for shift in exact_repeat_shifts(pixels, fine.local_energy > fine.floor) if _distinct(shift, shifts)]
    for shift in shifts:
        # The fine band first (a lossless copy repeats its noise exactly); the coarse band for
        # what a re-compression left of a copy's texture when the fine one no longer repeats.
        for band in (fine, coarse):
            copy, correlation = _copy_region(band, shift)
            area = int(copy.sum())
            if area >= band.min_area and correlation >= band.min_clone_correlation:
                break
        else:
            continue
        result.clones.append(Clone(shift=(shift[0] * scale, shift[1] * scale), area_fraction=area / fine.residual.size,
                                   correlation=correlation))
        # A marked pixel says its whole window repeats: mark the windows, not just their centres.
        copy = _box(copy.astype(np.float64)) > 0.5
        small_mask |= copy | _moved(copy, shift)
    if result.clones:
        result.clones.sort(key=lambda clone: -clone.correlation)
        mask = np.repeat(np.repeat(small_mask, scale, 0), scale, 1) if scale > 1 else small_mask
        result.mask[:mask.shape[0], :mask.shape[1]] = mask
    return result


def candidate_shifts(residual: np.ndarray) -> list[tuple[int, int]]:
    """Shifts (dy, dx) with the strongest overlap-normalised self-correlation of the residual,
    each at least MIN_SHIFT long, one of each +-pair, no two within 2 px of each other: the
    CANDIDATES strongest of the plain correlation and WHITENED_CANDIDATES of the whitened one.

    Periodic traces (a resampling's period, the JPEG grid) are narrow peaks of the power
    spectrum that put every multiple of their period near the top of the plain list, above a
    small copy; a copy's share of the power is spread over all frequencies. Dividing the power
    by its local mean over neighbouring frequencies, clipped, flattens the peaks and keeps the
    copy. Each list finds copies the other misses, so both are examined."""
    h, w = residual.shape
    # Arrays here are 4x the working photo (zero padding: linear, not circular, correlation), so
    # they are made in place and let go early: several searches may be in flight at once.
    # Padded to at least 2h x 2w, to lengths whose only factors are 2, 3 and 5 (a 1000 x 980
    # photo's 1960 = 2^3 5 7^2 took 0.37 s, 2000 a third of it). rfft2, one axis at a time: the
    # rows' transforms skip the rows of zeros (identical values, a third of the time).
    tall, wide = _fast_length(2 * h), _fast_length(2 * w)
    spectrum = np.fft.fft(np.fft.rfft(residual.astype(np.float32), wide, axis=1), tall, axis=0)
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    del spectrum
    whitened = _spectral_mean(power)
    whitened += 1e-12
    np.divide(power, whitened, out=whitened)
    np.minimum(whitened, WHITEN_CLIP, out=whitened)
    dy, dx, norm, excluded = _shift_grid(h, w, wide)
    chosen: list[tuple[int, int]] = []
    for which, count in (("plain", CANDIDATES), ("whitened", WHITENED_CANDIDATES)):
        spectrum_power = power if which == "plain" else whitened
        # Rows h.. hold the negative shifts, each the twin of a positive one: only the first h are
        # read. The power is real, so its inverse transform along the rows is the conjugate of its
        # forward one, and rfft gives those first rows for half the work of ifft.
        rows = np.conj(np.fft.rfft(spectrum_power, axis=0)[:h])
        z = np.fft.irfft(rows, wide, axis=1) * (norm / tall)
        del spectrum_power
        if which == "plain":
            del power
        z[excluded] = -np.inf
        flat = z.ravel()
        top = np.argpartition(flat, -400)[-400:]
        added = 0
        for index in top[np.argsort(flat[top])[::-1]]:
            if not np.isfinite(flat[index]) or added == count:
                break
            row, col = divmod(int(index), wide)
            shift = (int(dy[row, 0]), int(dx[0, col]))
            if _distinct(shift, chosen):
                chosen.append(shift)
                added += 1
    return chosen


def exact_repeat_shifts(pixels: np.ndarray, textured: np.ndarray) -> list[tuple[int, int]]:
    """Shifts (dy, dx) at which at least EXACT_MIN_BLOCKS textured EXACT_BLOCK x EXACT_BLOCK
    blocks of the photo (at every pixel position) repeat exactly, strongest first, at most
    EXACT_CANDIDATES, each at least MIN_SHIFT long, one of each +-pair.

    A lossless copy repeats its source's pixels bit for bit, however small or flat it is, while
    its share of the photo-wide correlation can be too small to reach the top of
    candidate_shifts (a third of bench.clones' PNG copies). Every block is hashed (a polynomial
    hash over its pixels, computed one axis at a time with wrapping uint64 arithmetic), equal
    hashes are found by sorting, and their shifts are counted. Blocks in a flat area (textured
    False at their centre) repeat by nature and are left out, and so are values shared by more
    than EXACT_MAX_REPEATS blocks (a rendered pattern, not a copy)."""
    k = EXACT_BLOCK
    h, w = pixels.shape[:2]
    if h < k or w < k:
        return []
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps: a hash, in place (a 2 MP photo: 16 MB an array)
        values = pixels[..., 0].astype(np.uint64) * np.uint64(0x100000001B3)
        values += pixels[..., 1].astype(np.uint64) * np.uint64(0x1000193)
        values += pixels[..., 2]
        rows = np.zeros((h, w - k + 1), np.uint64)
        for j in range(k):
            rows *= np.uint64(0x9E3779B97F4A7C15)
            rows += values[:, j:j + w - k + 1]
        del values
        hashes = np.zeros((h - k + 1, w - k + 1), np.uint64)
        for i in range(k):
            hashes *= np.uint64(0xC2B2AE3D27D4EB4F)
            hashes += rows[i:i + h - k + 1]
        del rows
    positions = np.flatnonzero(textured[k // 2:k // 2 + h - k + 1, k // 2:k // 2 + w - k + 1])
    values = hashes.ravel()[positions]
    order = np.argsort(values)
    equal = np.flatnonzero(values[order[1:]] == values[order[:-1]])  # i: sorted i and i + 1 are equal
    if equal.size == 0:
        return []
    # Runs of equal hashes: a run of n gives its n - 1 neighbouring pairs; long runs are patterns.
    run_id = np.cumsum(np.concatenate(([1], np.diff(equal) != 1)))
    run_length = np.bincount(run_id)[run_id] + 1
    equal = equal[run_length <= EXACT_MAX_REPEATS]
    a, b = positions[order[equal]], positions[order[equal + 1]]
    cols = w - k + 1
    dy, dx = b // cols - a // cols, b % cols - a % cols
    flip = (dy < 0) | ((dy == 0) & (dx < 0))
    dy, dx = np.where(flip, -dy, dy), np.where(flip, -dx, dx)
    long_enough = dy * dy + dx * dx >= MIN_SHIFT * MIN_SHIFT
    if not long_enough.any():
        return []
    shifts, votes = np.unique(np.stack([dy[long_enough], dx[long_enough]], axis=1), axis=0, return_counts=True)
    best = np.argsort(votes, kind="stable")[::-1][:EXACT_CANDIDATES]
    return [(int(shifts[i][0]), int(shifts[i][1])) for i in best if votes[i] >= EXACT_MIN_BLOCKS]


def _distinct(shift: tuple[int, int], chosen: list[tuple[int, int]]) -> bool:
    """Is the shift more than 2 px from every chosen one (in dy or dx)?"""
    return all(abs(shift[0] - y) > 2 or abs(shift[1] - x) > 2 for y, x in chosen)


def _fast_length(n: int) -> int:
    """The smallest length >= n whose only prime factors are 2, 3 and 5 (fast for pocketfft)."""
    best = 2 * n
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35
            while length < n:
                length *= 2
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best


@functools.lru_cache(maxsize=4)
def _shift_grid(h: int, w: int, wide: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the first h rows (shifts dy = 0..h-1) of the correlation of an h x w residual padded
    to `wide` >= 2w columns:
    each cell's shift (dy column, dx row), 1 / sqrt(its overlap in pixels), and whether it is
    excluded (too short, too little overlap, or the negative of another: dy == 0 and dx < 0).
    The same for every photo of a size: cached."""
    dy = np.arange(h, dtype=np.int64)[:, None]
    dx = np.fft.fftfreq(wide, 1 / wide).round().astype(np.int64)[None, :]
    overlap = (h - dy) * (w - np.abs(dx)).clip(0)
    excluded = (overlap < MIN_OVERLAP) | (dy * dy + dx * dx < MIN_SHIFT * MIN_SHIFT) | ((dy == 0) & (dx < 0))
    norm = (1.0 / np.sqrt(np.maximum(overlap, 1))).astype(np.float32)
    for array in (dy, dx, norm, excluded):
        array.flags.writeable = False
    return dy, dx, norm, excluded


def _spectral_mean(power: np.ndarray) -> np.ndarray:
    """Mean of the power over (2 WHITEN_BINS + 1)^2 neighbouring frequencies (rows wrap: the
    full FFT axis; columns are rfft's half axis, reflected at its ends)."""
    k = WHITEN_BINS
    sums = np.pad(np.pad(np.pad(power, ((k, k), (0, 0)), mode="wrap"), ((0, 0), (k, k)), mode="reflect"), ((1, 0), (1, 0)))
    np.cumsum(sums, axis=0, out=sums)
    np.cumsum(sums, axis=1, out=sums)
    n = 2 * k + 1
    h, w = power.shape
    return (sums[n:n + h, n:n + w] - sums[:h, n:n + w] - sums[n:n + h, :w] + sums[:h, :w]) / (n * n)


def _copy_region(band: _Band, shift: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(bool map of the pixels p whose window correlates with the window at p + shift, and
    their median correlation). A pixel counts only if its correlation at the shift beats its
    correlation at the shift moved by APERTURE_OFFSETS by APERTURE_MARGIN: a straight edge or
    a line pattern matches itself all along its length, a copy's noise only at one shift."""
    residual, local_energy, floor = band.residual, band.local_energy, band.floor
    h, w = residual.shape
    if not _blocks_repeat(band, shift):
        return np.zeros((h, w), bool), 0.0
    local = _local_correlation(residual, local_energy, shift, (0, h, 0, w), floor)
    marked = local >= MIN_CORRELATION
    # A clone needs band.min_area marked pixels whose median reaches the band's min_clone_correlation,
    # so at least half that many at it already: most candidates stop here, before the costlier checks.
    if np.count_nonzero(local >= band.min_clone_correlation) < band.min_area / 2:
        return np.zeros_like(marked), 0.0
    crop = _around(marked)
    inside = local[crop[0]:crop[1], crop[2]:crop[3]]
    side = np.max([_local_correlation(residual, local_energy, (shift[0] + oy, shift[1] + ox), crop, floor)
                   for oy, ox in APERTURE_OFFSETS], axis=0)
    marked[crop[0]:crop[1], crop[2]:crop[3]] &= inside - side >= APERTURE_MARGIN
    marked &= _box(marked.astype(np.float64)) >= COMPACT * WINDOW * WINDOW
    if not marked.any():
        return marked, 0.0
    correlation = float(np.median(local[marked]))
    # A periodic texture (tiles, a facade's windows, a border pattern) repeats at every multiple
    # of its period, a copy at its one shift: the same pixels compared at -shift and 2 x shift
    # correlate as well as at the shift in a texture, hardly at all around a copy.
    crop = _around(marked)
    inside = marked[crop[0]:crop[1], crop[2]:crop[3]]
    for factor in (-1, 2):
        other_shift = (factor * shift[0], factor * shift[1])
        # only where p + factor x shift is inside the photo: outside, a window has nothing to compare
        y0, y1, x0, x1 = _overlap(residual.shape, other_shift, crop)
        there = np.zeros_like(inside)
        if y1 > y0 and x1 > x0:
            there[y0 - crop[0]:y1 - crop[0], x0 - crop[2]:x1 - crop[2]] = inside[y0 - crop[0]:y1 - crop[0], x0 - crop[2]:x1 - crop[2]]
        if np.count_nonzero(there) < max(16, np.count_nonzero(inside) // 4):
            continue
        other = _local_correlation(residual, local_energy, other_shift, crop, floor)
        if float(np.median(other[there])) >= PERIODIC_RATIO * correlation:
            return np.zeros_like(marked), 0.0
    return marked, correlation


def _blocks_repeat(band: _Band, shift: tuple[int, int]) -> bool:
    """A cheap first look: do at least band.min_blocks textured BLOCK x BLOCK blocks of the
    overlap correlate with their shifted twins at band.screen or more (and, in a band with
    block_tests, pass _copy_region's aperture and periodicity tests as blocks)? A clone of
    MIN_AREA pixels holds whole blocks that do; most candidates hold none and skip the
    per-pixel windows."""
    y0, y1, x0, x1 = _overlap(band.residual.shape, shift)
    rows, cols = (y1 - y0) // BLOCK, (x1 - x0) // BLOCK
    if rows < 1 or cols < 1:
        return False
    a = band.residual[y0:y0 + rows * BLOCK, x0:x0 + cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
    b = band.residual[y0 + shift[0]:y0 + shift[0] + rows * BLOCK, x0 + shift[1]:x0 + shift[1] + cols * BLOCK]
    b = b.reshape(rows, BLOCK, cols, BLOCK)

    def sums(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # per block; einsum: half the time of (x * y).sum
        return np.einsum("ijkl,ijkl->ik", x, y)

    ab, aa, bb = sums(a, b), sums(a, a), sums(b, b)
    block_floor = band.floor * BLOCK * BLOCK / (WINDOW * WINDOW)
    textured = (aa > block_floor) & (bb > block_floor)
    rows_at, cols_at = np.nonzero(textured & (ab >= band.screen * np.sqrt(aa * bb)))
    if band.block_tests and rows_at.size >= band.min_blocks:
        # Only the blocks that repeat, their pixels gathered: each must also correlate clearly
        # less at the shift moved by APERTURE_OFFSETS, and not as well at -shift or 2 x shift
        # where those are inside the photo (the per-pixel tests of _copy_region, per block).
        tops, lefts = y0 + rows_at * BLOCK, x0 + cols_at * BLOCK
        at_shift = ab[rows_at, cols_at] / np.sqrt(aa[rows_at, cols_at] * bb[rows_at, cols_at])
        keep = np.ones(rows_at.size, bool)
        for oy, ox in APERTURE_OFFSETS:
            keep &= at_shift - _gathered_correlation(band.residual, tops, lefts, (shift[0] + oy, shift[1] + ox)) >= APERTURE_MARGIN
        # A facade in perspective repeats at a period that drifts across the photo: the twin at
        # -shift or 2 x shift is looked for within PERIODIC_SLACK px of it.
        slack = (-PERIODIC_SLACK, 0, PERIODIC_SLACK)
        for factor, oy, ox in itertools.product((-1, 2), slack, slack):
            other = _gathered_correlation(band.residual, tops, lefts, (factor * shift[0] + oy, factor * shift[1] + ox))
            keep &= other < PERIODIC_RATIO * at_shift
        return int(np.count_nonzero(keep)) >= band.min_blocks
    return rows_at.size >= band.min_blocks


def _gathered_correlation(residual: np.ndarray, tops: np.ndarray, lefts: np.ndarray,
                          shift: tuple[int, int]) -> np.ndarray:
    """Correlation of each BLOCK x BLOCK block (top-left corners tops, lefts) with its twin at
    + shift; 0 where the twin is not inside the photo."""
    h, w = residual.shape
    inside = (tops + shift[0] >= 0) & (tops + shift[0] <= h - BLOCK) & (lefts + shift[1] >= 0) & (lefts + shift[1] <= w - BLOCK)
    out = np.zeros(tops.size)
    if not inside.any():
        return out
    offsets = np.arange(BLOCK)
    ys = tops[inside][:, None, None] + offsets[None, :, None]
    xs = lefts[inside][:, None, None] + offsets[None, None, :]
    here, there = residual[ys, xs], residual[ys + shift[0], xs + shift[1]]
    energy = np.square(here).sum(axis=(1, 2)) * np.square(there).sum(axis=(1, 2))
    out[inside] = (here * there).sum(axis=(1, 2)) / np.sqrt(np.maximum(energy, 1e-12))
    return out


def _local_correlation(residual: np.ndarray, local_energy: np.ndarray, shift: tuple[int, int],
                       crop: tuple[int, int, int, int], floor: float) -> np.ndarray:
    """ZNCC of the WINDOW x WINDOW residual windows at p and at p + shift, for p in the crop
    (y0, y1, x0, x1); 0 where p + shift leaves the photo or either window is flatter than
    `floor` (summed energy)."""
    dy, dx = shift
    top, bottom, left, right = crop
    out = np.zeros((bottom - top, right - left))
    y0, y1, x0, x1 = _overlap(residual.shape, shift, crop)
    if y1 <= y0 or x1 <= x0:
        return out
    ab = _box(residual[y0:y1, x0:x1] * residual[y0 + dy:y1 + dy, x0 + dx:x1 + dx])
    aa = local_energy[y0:y1, x0:x1]
    bb = local_energy[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    textured = (aa > floor) & (bb > floor)
    out[y0 - top:y1 - top, x0 - left:x1 - left] = np.where(textured, ab / np.sqrt(np.maximum(aa * bb, 1e-12)), 0.0)
    return out


def _moved(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """mask moved by shift: out[p + shift] = mask[p]."""
    dy, dx = shift
    y0, y1, x0, x1 = _overlap(mask.shape, shift)
    out = np.zeros_like(mask)
    out[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = mask[y0:y1, x0:x1]
    return out


def _overlap(shape: tuple[int, int], shift: tuple[int, int],
             crop: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the pixels p of the crop (y0, y1, x0, x1; the whole photo by default)
    whose p + shift is inside the photo too; empty (y1 <= y0 or x1 <= x0) when there are none."""
    h, w = shape
    dy, dx = shift
    top, bottom, left, right = (0, h, 0, w) if crop is None else crop
    return max(top, -dy), min(bottom, h - dy), max(left, -dx), min(right, w - dx)


def _around(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box of a non-empty mask grown by WINDOW on each side (within the photo): the
    crop whose windows see every marked pixel's whole window."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return max(0, ys.min() - WINDOW), min(h, ys.max() + WINDOW + 1), max(0, xs.min() - WINDOW), min(w, xs.max() + WINDOW + 1)


def _binned(rgb: np.ndarray, scale: int) -> np.ndarray:
    """uint32 sums of scale x scale bins of a uint8 photo (its last rows and columns that do not
    fill a bin dropped). Rows first, then columns, each as scale slice additions: a 12 MP photo
    in 0.03 s, where one sum over both bin axes took 0.55 s."""
    h, w = rgb.shape[0] // scale * scale, rgb.shape[1] // scale * scale
    rows = rgb[:h, :w].reshape(h // scale, scale, w, 3)
    row_sums = rows[:, 0].astype(np.uint16)  # at most 255 x scale
    for i in range(1, scale):
        row_sums += rows[:, i]
    columns = row_sums.reshape(h // scale, w // scale, scale, 3)
    sums = columns[:, :, 0].astype(np.uint32)
    for j in range(1, scale):
        sums += columns[:, :, j]
    return sums


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _residuals(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fine, coarse): luma minus its Gaussian blur at RESIDUAL_SIGMA (the noise a lossless copy
    repeats exactly), and that blur minus the one at COARSE_SIGMA (a band JPEG below quality ~90
    keeps: bench.clones), each clipped to CLIP_SIGMAS robust sigmas (MAD)."""
    near = _blur(luma, RESIDUAL_SIGMA)
    return _clipped(luma - near), _clipped(near - _blur(luma, COARSE_SIGMA))


def _blur(luma: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(math.ceil(3 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    taps /= taps.sum()
    padded = np.pad(luma, radius, mode="reflect")
    h, w = luma.shape
    rows = sum(t * padded[i:i + h, :] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + w] for i, t in enumerate(taps))


def _clipped(residual: np.ndarray) -> np.ndarray:
    spread = CLIP_SIGMAS * 1.4826 * float(np.median(np.abs(residual - np.median(residual)))) + 1e-6
    return np.clip(residual, -spread, spread).astype(np.float32)  # float32: half the memory traffic of the products


def _box(values: np.ndarray) -> np.ndarray:
    """Sums over WINDOW x WINDOW windows centred on each pixel (zeros outside), same shape."""
    h, w = values.shape
    half = WINDOW // 2
    padded = np.zeros((h + WINDOW, w + WINDOW))
    padded[half + 1:half + 1 + h, half + 1:half + 1 + w] = values
    sums = padded.cumsum(0).cumsum(1)
    return sums[WINDOW:, WINDOW:] - sums[:h, WINDOW:] - sums[WINDOW:, :w] + sums[:h, :w]


def fold_in(heatmap: np.ndarray, model_score: float, result: CloneResult) -> tuple[np.ndarray, float]:
    """The map and image score a user gets once the clones are added to the model's.

    The map is the model's, raised to the clone's confidence on both copies of every clone
    found; the image score is the noisy-OR of the model's score and that confidence (either
    piece of evidence alone can make a photo suspect; the score stays in 0..1 and still orders
    photos by the model where no clone is found)."""
    if not result.found or result.mask is None:
        return heatmap, model_score
    confidence = result.confidence
    folded = np.where(result.mask, np.maximum(heatmap, np.asarray(confidence, heatmap.dtype)), heatmap)
    return folded, 1.0 - (1.0 - model_score) * (1.0 - confidence)
