"""JPEG structure: the quantisation tables in the file, the quality they imply, who writes such
tables, and the local 8x8 block grid (its strength and phase).

- Tables: read by Pillow (`Image.quantization`, natural row-major order). The quality is the
  IJG libjpeg quality whose scaled standard tables (ITU-T T.81 Annex K) are closest; an exact
  match means a libjpeg-family encoder (Pillow, GIMP, ImageMagick, many phone and web tools).
  Tables that match no scaled standard table are a vendor's own, as most cameras write.
- Known encoders: the standard tables at every quality, plus the tables observed in the
  untouched camera files of the project's shared data (`known_cameras.json`, one table pair
  per camera model as that file was saved; written by bench/jpeg_tables.py). A file whose EXIF
  names a camera but whose tables are libjpeg's standard ones was re-saved by software.
- Grid: JPEG compresses 8x8 blocks independently, so a JPEG-compressed photo shows slightly
  stronger pixel differences across every 8th column and row. The phase is the offset of those
  boundaries. Per 64x64 region the phase is measured again: a region whose grid is strong but
  shifted against the photo's was pasted without aligning to the photo's grid (or was cropped
  before being pasted), the basis of blocking-artifact-grid methods (Li, Yuan & Yu, 2009).
"""
from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from service.decode import read_exif_basics
from service.layers.base import LayerResult, NotApplicable, Photo, expand_blocks, grey

NAME = "jpeg"
GRID_REGION = 64
# A region's grid counts when its boundary excess is at least this fraction of its in-block differences.
GRID_MIN_STRENGTH = 0.05
GRID_TILE_STRENGTH = 0.15  # a 64x64 tile has few boundaries: its own grid must stand out more to count
KNOWN_CAMERAS = Path(__file__).with_name("known_cameras.json")

STANDARD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])
STANDARD_CHROMINANCE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32)


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table (baseline: clamped to 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def implied_quality(tables: dict[int, list[int]]) -> dict:
    """The IJG quality whose standard tables are closest to the file's, and whether they match exactly."""
    luminance = np.asarray(tables[0])
    chrominance = np.asarray(tables[1]) if 1 in tables else None
    best = (float("inf"), 0)
    for quality in range(1, 101):
        error = np.abs(ijg_table(STANDARD_LUMINANCE, quality) - luminance).mean()
        if chrominance is not None:
            error += np.abs(ijg_table(STANDARD_CHROMINANCE, quality) - chrominance).mean()
        best = min(best, (float(error), quality))
    error, quality = best
    return {"quality": quality, "exact_standard": error == 0.0, "mean_abs_error": round(error, 3)}


@lru_cache(maxsize=1)
def known_cameras() -> dict[str, list[str]]:
    """Table fingerprint -> camera models observed writing it (empty when the file is absent)."""
    if not KNOWN_CAMERAS.is_file():
        return {}
    return json.loads(KNOWN_CAMERAS.read_text())["tables"]


def table_fingerprint(tables: dict[int, list[int]]) -> str:
    """Tables as one comparable string: 'luminance|chrominance', values joined by commas."""
    return "|".join(",".join(str(int(v)) for v in tables[k]) for k in sorted(tables)[:2])


def read_tables(data: bytes) -> tuple[dict[int, list[int]], str | None]:
    """(quantisation tables, the camera the EXIF names or None)."""
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
            tables = dict(getattr(image, "quantization", None) or {})
            camera = read_exif_basics(image)[1]
    except Exception as error:  # noqa: BLE001 - not a JPEG, or a broken one: the layer does not apply
        raise NotApplicable(f"not a JPEG file ({type(error).__name__}); the other layers still apply") from None
    if 0 not in tables:
        raise NotApplicable("the JPEG holds no luminance quantisation table")
    return tables, camera


def boundary_profile(luma: np.ndarray, axis: int) -> np.ndarray:
    """Mean |difference| between neighbours across each of the 8 boundary phases (index p: between p and p+1)."""
    difference = np.abs(np.diff(luma, axis=axis))
    positions = np.arange(difference.shape[axis]) % 8
    means = difference.mean(axis=1 - axis)
    return np.array([means[positions == phase].mean() if np.any(positions == phase) else 0.0 for phase in range(8)])


def grid_of(luma: np.ndarray) -> tuple[int, int, float]:
    """(column phase, row phase, strength): the 8x8 grid's offset and how much it stands out."""
    phases, strengths = [], []
    for axis in (1, 0):
        profile = boundary_profile(luma, axis)
        phase = int(profile.argmax())
        others = np.delete(profile, phase)
        phases.append(phase)
        strengths.append((profile[phase] - others.mean()) / max(others.mean(), 1e-6))
    return phases[0], phases[1], float(min(strengths))


def grid_map(luma: np.ndarray, region: int = GRID_REGION) -> tuple[np.ndarray, tuple[int, int, float], float]:
    """(map, photo grid, misaligned fraction): regions with a strong grid at another phase than the photo's."""
    photo_grid = grid_of(luma)
    if photo_grid[2] < GRID_MIN_STRENGTH:  # no readable grid (high quality, resampled, or never a JPEG)
        return np.zeros(luma.shape, np.float32), photo_grid, 0.0
    rows, cols = -(-luma.shape[0] // region), -(-luma.shape[1] // region)
    scores = np.zeros((rows, cols), np.float32)
    counted = misaligned = 0
    for row in range(rows):
        for col in range(cols):
            tile = luma[row * region:(row + 1) * region, col * region:(col + 1) * region]
            if min(tile.shape) < 16:
                continue
            column_phase, row_phase, strength = grid_of(tile)
            if strength < max(GRID_TILE_STRENGTH, photo_grid[2] / 2):
                continue
            counted += 1
            if (column_phase, row_phase) != photo_grid[:2]:
                misaligned += 1
                scores[row, col] = min(1.0, strength / (2 * GRID_TILE_STRENGTH))
    return expand_blocks(scores, region, luma.shape), photo_grid, misaligned / max(counted, 1)


def analyse(photo: Photo) -> LayerResult:
    tables, camera = read_tables(photo.data)
    quality = implied_quality(tables)
    fingerprint = table_fingerprint(tables)
    cameras = known_cameras().get(fingerprint, [])
    if quality["exact_standard"]:
        encoder = f"libjpeg standard tables at quality {quality['quality']} (Pillow, GIMP, ImageMagick, many apps)"
    elif cameras:
        encoder = "the tables of " + ", ".join(cameras[:5])
    else:
        encoder = "not in the known-encoder table (a camera's or an editor's own tables)"
    warnings = []
    if camera and quality["exact_standard"]:
        warnings.append(f"EXIF names a camera ({camera}) but the tables are libjpeg's standard ones: "
                        "re-saved by software after capture, or a camera that uses standard tables")
    if camera and cameras and not any(_same_camera(camera, known) for known in cameras):
        warnings.append(f"EXIF names {camera} but the tables are those of {', '.join(cameras[:3])}")
    luma = grey(photo.rgb)
    heatmap, (column_phase, row_phase, strength), misaligned = grid_map(luma)
    summary = {
        "tables": {str(k): [int(v) for v in table] for k, table in sorted(tables.items())},
        "n_tables": len(tables),
        "implied_quality": quality["quality"],
        "standard_tables": quality["exact_standard"],
        "table_error": quality["mean_abs_error"],
        "encoder": encoder,
        "matching_cameras": cameras,
        "exif_camera": camera,
        "warnings": warnings,
        "grid": {"readable": strength >= GRID_MIN_STRENGTH, "column_phase": column_phase, "row_phase": row_phase, "strength": round(strength, 4),
                 "aligned": column_phase == 7 and row_phase == 7,
                 "misaligned_fraction": round(misaligned, 4), "region": GRID_REGION},
    }
    return LayerResult(name=NAME, applicable=True, summary=summary, heatmap=heatmap.astype(np.float32))


def _same_camera(exif_camera: str, known: str) -> bool:
    return exif_camera.lower() in known.lower() or known.lower() in exif_camera.lower()
