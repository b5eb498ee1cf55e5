"""What `span scan` analyses: files, folders (searched recursively), globs and manifest CSVs turned
into a sorted list of images, each named by its path below the scan root.

Outputs are named by the input's path relative to the scan root (`gps/DSCN0010.jpg` ->
`gps/DSCN0010.jpg.heatmap.png`), so `a/x.jpg`, `b/x.jpg` and `a/x.png` never collide and a file
gets the same name whichever subset of the folder is scanned. The root is the arguments' common
folder on the first scan into an output folder; summary.json records it and later scans into that
folder reuse it (`--root` sets it, e.g. when the photos moved)."""
from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif"})


@dataclass(frozen=True)
class ScanInput:
    path: str           # as the user named it (relative paths stay relative, for a readable summary)
    key: str            # path relative to the scan root, '/'-separated: the outputs' name and the summary's
    error: str | None = None   # set for a PATH argument that matched nothing

    @property
    def local(self) -> Path:
        return Path(self.path)


class ScanUsageError(Exception):
    """The arguments cannot make a scan (exit status 2, one line)."""


def _is_hidden(path: Path, base: Path) -> bool:
    """Dot-files and dot-folders below the base (.DS_Store, ._x.jpg from macOS, .git) are not photos."""
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _is_uri(path: str) -> bool:
    return "://" in path


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue   # never rescan our own output folder when it lies inside an input folder
        if is_image_name(path.name) and path.is_file() and not _is_hidden(path, folder):
            found.append(path)
    return sorted(found)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: where the mirrored names start."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def recorded_root(out_dir: Path | None) -> str | None:
    """The scan root an earlier scan into this output folder named its outputs by."""
    if out_dir is None:
        return None
    try:
        root = json.loads((Path(out_dir) / "summary.json").read_text()).get("root")
    except (OSError, ValueError, AttributeError):
        return None
    return root if isinstance(root, str) and root else None


def choose_root(bases: Sequence[str], out_dir: Path | None, root: str | None) -> str:
    """The scan root: `root` when given (e.g. the photos moved since), else the one this output
    folder already uses (so a subset gets the names the whole folder got), else the arguments'
    common folder."""
    if root is not None:
        return os.path.abspath(root)
    recorded = recorded_root(out_dir)
    if recorded is not None:
        return recorded
    if not bases:
        return os.path.abspath(".")
    return os.path.commonpath([os.path.abspath(base) for base in bases])


def relative_name(path: str, root: str, *, uri: bool = False) -> str:
    """The input's name below the scan root; ScanUsageError when it lies outside."""
    if uri:
        inside = path.startswith(root.rstrip("/") + "/")
        relative = path[len(root.rstrip("/")) + 1:] if inside else ""
    else:
        relative = os.path.relpath(os.path.abspath(path), root)
        inside = not (relative == ".." or relative.startswith("../") or os.path.isabs(relative))
        relative = Path(relative).as_posix()
    if not inside or not relative:
        raise ScanUsageError(f"{path} lies outside the scan root {root} that this output folder names its "
                             "outputs by; scan it into another --out, or give --root if the photos moved")
    return relative


def collect_inputs(arguments: Sequence[str], out_dir: Path | None = None,
                   root: str | None = None) -> tuple[list[ScanInput], str]:
    """Expand files, folders (recursively, image suffixes only) and globs into unique inputs,
    named by their path below the scan root (see `choose_root`). Returns the inputs and the root.

    A file named explicitly is always tried, whatever its suffix: the decoder reads the format
    from the bytes. An argument that matches nothing becomes an input with an error, so it is
    reported in the summary and the exit status, not silently dropped.
    """
    skip = out_dir.resolve() if out_dir is not None else None
    found: dict[Path, tuple[Path, Path]] = {}   # resolved -> (path as named, base folder)
    unmatched: list[str] = []
    missing: list[str] = []   # listed by a manifest, not there
    for argument in arguments:
        path = Path(argument).expanduser()
        absent: list[str] = []
        if path.is_dir():
            pairs = [(p, path) for p in _walk(path, skip)]
        elif path.is_file() and path.suffix.lower() == ".csv":
            listed = [Path(entry) for entry in manifest_entries(path)]
            pairs = [(p, path.parent) for p in listed if p.is_file()]
            absent = [str(p) for p in listed if not p.is_file()]
        elif path.is_file():
            pairs = [(path, path.parent)]
        elif glob.has_magic(argument):
            base = _glob_base(argument)
            pairs = []
            for match in sorted(glob.glob(str(path), recursive=True)):
                match = Path(match)
                if match.is_dir():
                    pairs += [(p, match) for p in _walk(match, skip)]
                elif match.is_file() and not (skip and match.resolve().is_relative_to(skip)):
                    pairs.append((match, base))
        else:
            pairs = []
        if not pairs and not absent:
            unmatched.append(argument)
        missing += absent
        for p, base in pairs:
            found.setdefault(p.resolve(), (p, base))

    # Absolute but not resolved: a symlink inside a scanned folder keeps its place in the mirror.
    scan_root = choose_root([str(base) for _, base in found.values()], out_dir, root)
    inputs = sorted((ScanInput(str(p), relative_name(str(p), scan_root)) for p, _ in found.values()),
                    key=lambda i: i.key)
    return (inputs + [ScanInput(a, key="", error=f"no image file matches {a!r}") for a in unmatched]
            + [ScanInput(m, key="", error=f"the manifest lists {m}, which is not a file") for m in missing]), scan_root


def manifest_entries(csv_path: Path) -> list[str]:
    """The inputs a manifest CSV lists: its `path` column (or `image`, as benchmark manifests
    name it); relative entries are relative to the CSV's folder, URIs are kept as they are."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in ("path", "image") if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ScanUsageError(f"{csv_path}: a manifest needs a 'path' (or 'image') column")
        entries = [row[column].strip() for row in reader if (row.get(column) or "").strip()]
    return [e if _is_uri(e) or os.path.isabs(e) else str(csv_path.parent / e) for e in entries]
