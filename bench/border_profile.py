"""Are heatmaps darker along the photo's border than inside? (issue 13, direction 7)

    python -m bench.border_profile ../shared/data/benchmarks/dev/manifest.csv [--model-dir DIR]

For each benchmark photo, the mean heatmap value in bands at increasing distance from the
border (as a fraction of the shorter side), over its pristine pixels only (the truth mask's
zeros), divided by the mean over the central region. A map with no border artefact stays near
1.0 in every band; the reference attention (out-of-image neighbours keep logit 0) and
zero-padded convolutions pull the outermost bands down.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from service.decode import decode_image
from service.engine import Engine
from service.evaluation.benchmark import read_benchmark, read_mask
from service.settings import Settings

BANDS = (0.0, 0.02, 0.05, 0.1, 0.2)  # band k: distance to the border in [BANDS[k], BANDS[k+1]) x shorter side


def band_ratios(heatmap: np.ndarray, pristine: np.ndarray) -> list[float] | None:
    h, w = heatmap.shape
    yy, xx = np.mgrid[0:h, 0:w]
    distance = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx)) / min(h, w)
    centre = pristine & (distance >= BANDS[-1])
    if not centre.any():
        return None
    inside = float(heatmap[centre].mean())
    ratios = []
    for lo, hi in zip(BANDS, BANDS[1:]):
        band = pristine & (distance >= lo) & (distance < hi)
        ratios.append(float(heatmap[band].mean()) / max(inside, 1e-6) if band.any() else float("nan"))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()
    overrides = {"model_dir": args.model_dir} if args.model_dir else {}
    settings = Settings(providers=["CPUExecutionProvider"], precision="fp32", **overrides)
    engine = Engine.from_settings(settings)
    rows = read_benchmark(args.benchmark)
    collected = []
    try:
        for row in rows:
            rgb = decode_image(row.image.read_bytes(), max_pixels=settings.max_pixels).rgb
            heatmap = engine.predict(rgb)
            h, w = heatmap.shape
            truth = read_mask(row.mask, (w, h)) if row.mask else np.zeros((h, w), bool)
            ratios = band_ratios(heatmap, ~truth)
            if ratios is not None:
                collected.append(ratios)
    finally:
        engine.close(5)
    table = np.nanmean(np.array(collected), axis=0)
    labels = [f"{lo:.0%}-{hi:.0%}" for lo, hi in zip(BANDS, BANDS[1:])]
    print(f"model {engine.manifest.sha256[:12]}, {len(collected)} photos; border band / centre (pristine pixels):")
    print(" | ".join(f"{label}: {value:.3f}" for label, value in zip(labels, table)))


if __name__ == "__main__":
    main()
