"""Write service/layers/known_cameras.json: the JPEG quantisation tables each camera model wrote,
observed in the untouched camera files of the shared data (photos/cameras/, one file per model).

    .venv/bin/python -m bench.jpeg_tables [--cameras ../shared/data/photos/cameras]

Only the tables (128 numbers per model) are kept, never the photos. A camera writes other
tables at other quality settings, so a match names a camera that wrote these tables, and no
match proves nothing. Files processed after capture (the Noise Ninja one) are left out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from service.layers.jpeg_structure import KNOWN_CAMERAS, implied_quality, table_fingerprint

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = ("after_Noise_Ninja",)


def collect(folder: Path) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.jpg")):
        if any(word in path.name for word in EXCLUDE):
            continue
        with Image.open(path) as image:
            quantization = dict(image.quantization)
            exif = image.getexif()
        if implied_quality(quantization)["exact_standard"]:
            continue  # libjpeg's own tables: they name the library, not the camera
        make, model = str(exif.get(0x010F, "")).strip("\x00 "), str(exif.get(0x0110, "")).strip("\x00 ")
        name = model if model.lower().startswith(make.split(" ")[0].lower()) else f"{make} {model}".strip()
        tables.setdefault(table_fingerprint(quantization), []).append(name or path.stem)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=Path, default=ROOT.parent / "shared" / "data" / "photos" / "cameras")
    args = parser.parse_args()
    tables = collect(args.cameras)
    KNOWN_CAMERAS.write_text(json.dumps({
        "source": "photos/cameras of the project's shared data (metadata-extractor image collection)",
        "written_by": "python -m bench.jpeg_tables",
        "tables": {key: sorted(set(names)) for key, names in sorted(tables.items())},
    }, indent=1) + "\n")
    print(f"{KNOWN_CAMERAS}: {len(tables)} distinct table pairs from {sum(map(len, tables.values()))} cameras")


if __name__ == "__main__":
    main()
