"""A/B engine latency of two weights folders on one 1024x768 camera JPEG, runs alternating,
so that a loaded machine slows both alike (decode excluded; each folder's own precision).

    python -m bench.ab_latency OLD_WEIGHTS_DIR weights [--repeats 6]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from service.decode import decode_image
from service.engine import Engine
from service.settings import Settings
from spancore.testing import EXIF_SAMPLES

PHOTO = EXIF_SAMPLES / "jpg" / "exif-org" / "fujifilm-dx10.jpg"  # 1024x768


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    rgb = decode_image(PHOTO.read_bytes(), max_pixels=10**9).rgb
    engines = {d: Engine.from_settings(Settings(model_dir=d, providers=["CPUExecutionProvider"])) for d in args.folders}
    try:
        for engine in engines.values():
            engine.predict(rgb)  # warm-up
        times: dict[Path, list[float]] = {d: [] for d in engines}
        for _ in range(args.repeats):
            for folder, engine in engines.items():
                started = time.perf_counter()
                engine.predict(rgb)
                times[folder].append(time.perf_counter() - started)
        for folder, values in times.items():
            print(f"{folder} ({engines[folder].manifest.precision}, {engines[folder].manifest.sha256[:12]}): "
                  f"p50 {statistics.median(values) * 1000:.0f} ms, min {min(values) * 1000:.0f} ms")
    finally:
        for engine in engines.values():
            engine.close(5)


if __name__ == "__main__":
    main()
