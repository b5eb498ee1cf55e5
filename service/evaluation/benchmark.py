"""The benchmark: a CSV of rows (id, image, mask, dataset, kind, width, height,
tampered_fraction, license; paths relative to its folder) and the masks it points to.
Called "benchmark" throughout, never "manifest": that word is the weights' manifest.json."""
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REQUIRED_COLUMNS = ("id", "image", "mask", "dataset", "kind", "width", "height", "tampered_fraction", "license")


class EvaluationError(Exception):
    """Anything that stops an evaluation, with a message meant for the person who ran it."""


class BenchmarkError(EvaluationError, ValueError):
    """The benchmark as a whole is unusable (fatal): not found, not CSV, missing columns, no rows, duplicate ids."""


class RowError(EvaluationError, ValueError):
    """One row is unusable (missing file, undecodable image, mask of another size): skipped and reported."""


@dataclass(frozen=True)
class BenchmarkRow:
    line: int  # line number in the CSV file, for messages
    id: str
    image: Path
    mask: Path | None  # None: pristine
    dataset: str
    kind: str
    fields: Mapping[str, str]


def read_benchmark(path: str | Path) -> list[BenchmarkRow]:
    """Read and check a benchmark CSV. Whole-file problems raise BenchmarkError; missing files are found per row later."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"manifest not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in REQUIRED_COLUMNS if name not in columns]
            if missing:
                raise BenchmarkError(
                    f"{path}: missing column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED_COLUMNS)}"
                    f" (found: {', '.join(columns) or 'no header'})"
                )
            records = [({(k or "").strip(): (v or "").strip() for k, v in record.items()}, reader.line_num) for record in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise BenchmarkError(f"{path}: not a readable CSV file ({error})") from error
    if not records:
        raise BenchmarkError(f"{path}: no rows")
    folder = path.parent
    rows: list[BenchmarkRow] = []
    seen: dict[str, int] = {}
    for record, line in records:
        row_id, image = record["id"], record["image"]
        if not row_id or not image:
            raise BenchmarkError(f"{path}, line {line}: empty 'id' or 'image'")
        if row_id in seen:
            raise BenchmarkError(f"{path}, line {line}: duplicate id {row_id!r} (first on line {seen[row_id]})")
        seen[row_id] = line
        rows.append(BenchmarkRow(
            line=line, id=row_id, image=folder / image,
            mask=folder / record["mask"] if record["mask"] else None,
            dataset=record["dataset"] or "unknown", kind=record["kind"], fields=record,
        ))
    return rows


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Binary mask (white, i.e. > 127 in 8-bit grey, = manipulated) that must match the image's (width, height)."""
    if not path.is_file():
        raise RowError(f"mask file not found: {path}")
    try:
        with Image.open(path) as mask_image:
            grey = mask_image.convert("L")
    except (OSError, SyntaxError, ValueError) as error:
        raise RowError(f"mask is not a readable image: {path} ({error})") from error
    if grey.size != size:
        raise RowError(
            f"mask size {grey.size[0]}x{grey.size[1]} differs from image size {size[0]}x{size[1]} "
            f"(image after EXIF orientation): {path}"
        )
    return np.asarray(grey) > 127


def mask_problem(truth: np.ndarray | None) -> str | None:
    """Why a row takes no part in pixel metrics, or None when it does."""
    if truth is None:
        return "pristine (no mask)"
    if not truth.any():
        return "mask is all black: no manipulated pixel, counted as pristine at image level"
    if truth.all():
        return "mask is all white: no pristine pixel, pixel metrics undefined"
    return None
