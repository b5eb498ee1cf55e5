"""What `span scan` analyses: files, folders (searched recursively) and globs turned into a sorted
list of images, each with a unique output name that mirrors its folder below the common base."""
from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path



IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif"})


@dataclass(frozen=True)
class ScanInput:
    path: Path          # as the user named it (relative paths stay relative, for a readable summary)
    key: str            # output name without suffixes, '/'-separated, unique within the scan
    error: str | None = None   # set for a PATH argument that matched nothing


def _is_hidden(path: Path, base: Path) -> bool:
    """Dot-files and dot-folders below the base (.DS_Store, ._x.jpg from macOS, .git) are not photos."""
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue   # never rescan our own output folder when it lies inside an input folder
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not _is_hidden(path, folder):
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


def collect_inputs(arguments: Sequence[str], out_dir: Path | None = None) -> list[ScanInput]:
    """Expand files, folders (recursively, image suffixes only) and globs into unique inputs.

    A file named explicitly is always tried, whatever its suffix: the decoder reads the format
    from the bytes. An argument that matches nothing becomes an input with an error, so it is
    reported in the summary and the exit status, not silently dropped.
    """
    skip = out_dir.resolve() if out_dir is not None else None
    found: dict[Path, tuple[Path, Path]] = {}   # resolved -> (path as named, base folder)
    unmatched: list[str] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            pairs = [(p, path) for p in _walk(path, skip)]
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
        if not pairs:
            unmatched.append(argument)
        for p, base in pairs:
            found.setdefault(p.resolve(), (p, base))

    inputs = _name_outputs(list(found.values()))
    return inputs + [ScanInput(Path(a), key="", error=f"no image file matches {a!r}") for a in unmatched]


def _name_outputs(pairs: list[tuple[Path, Path]]) -> list[ScanInput]:
    if not pairs:
        return []
    # Absolute but not resolved: a symlink inside a scanned folder keeps its place in the mirror.
    root = os.path.commonpath([os.path.abspath(base) for _, base in pairs])
    keyed: dict[str, list[Path]] = {}
    for path, _ in pairs:
        relative = Path(os.path.relpath(os.path.abspath(path), root))
        keyed.setdefault(relative.with_suffix("").as_posix(), []).append(path)
    inputs = []
    for key, paths in keyed.items():
        if len(paths) == 1:
            inputs.append(ScanInput(paths[0], key))
            continue
        # x.jpg and x.png in one folder: keep both, told apart by their extension (and order, if need be).
        seen: set[str] = set()
        for path in sorted(paths):
            unique = f"{key}_{path.suffix.lstrip('.').lower()}"
            while unique in seen or unique in keyed:
                unique += "_"
            seen.add(unique)
            inputs.append(ScanInput(path, unique))
    return sorted(inputs, key=lambda i: i.key)


