"""Make docs/example-heatmap.png: the shipped model's heatmap of one real forgery from a benchmark
manifest, colour-mapped like the web page and `span scan` overlays, with a legend.

Only our rendering is drawn. The benchmark photos and masks (CASIA, NoSo, IMD2020, Korus) are for
research use and must not be redistributed, so neither the photo nor its mask appears; the mask is
used only to print the image's pixel scores for the README caption.

    .venv/bin/python docs/make_example_heatmap.py ../shared/data/benchmarks/dev/manifest.csv ROW_ID
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.analysis import analyze_bytes
from service.engine import Engine
from service.evaluation.benchmark import read_benchmark, read_mask
from service.evaluation.metrics import pixel_metrics
from service.render import colorize
from service.settings import get_settings

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def figure(heatmap: np.ndarray, title: str, subtitle: str, width: int = 720) -> Image.Image:
    panel = Image.fromarray(colorize(heatmap))
    panel = panel.resize((width, round(panel.height * width / panel.width)), Image.Resampling.BILINEAR)
    font, bold = (ImageFont.truetype(str(f), s) if f.exists() else ImageFont.load_default() for f, s in ((FONT, 15), (BOLD, 16)))
    pad, top = 16, 66
    canvas = Image.new("RGB", (width + 2 * pad, top + panel.height + 80), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad), title, fill="#1d1f23", font=bold)
    draw.text((pad, pad + 22), subtitle, fill="#555555", font=font)
    canvas.paste(panel, (pad, top))
    bar = top + panel.height + 16
    canvas.paste(Image.fromarray(colorize(np.tile(np.linspace(0, 1, width, dtype=np.float32), (14, 1)))), (pad, bar))
    for value in (0, 0.25, 0.5, 0.75, 1):
        x = pad + round(value * (width - 1))
        draw.line([(x, bar + 14), (x, bar + 19)], fill="#555555")
        label = f"{value:g}"
        w = draw.textlength(label, font=font)
        draw.text((min(max(x - w / 2, pad), pad + width - w), bar + 20), label, fill="#555555", font=font)
    draw.text((pad, bar + 40), "probability of manipulation per pixel (the photo is not shown: research-use licence)",
              fill="#555555", font=font)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("row_id")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("example-heatmap.png"))
    args = parser.parse_args()

    row = next(r for r in read_benchmark(args.manifest) if r.id == args.row_id)
    settings = get_settings()
    engine = Engine.from_settings(settings)
    try:
        analysis = analyze_bytes(row.image.read_bytes(), engine, settings)
    finally:
        engine.close()
    model = analysis.model
    subtitle = f"{row.dataset}, {row.kind} · heatmap of {model['name']} {model['version']} ({model['sha256'][:12]})"
    if not model["trained"]:
        subtitle += " · UNTRAINED"
    figure(analysis.heatmap, row.id, subtitle).save(args.out, optimize=True)
    scores = ""
    if row.mask is not None:
        truth = read_mask(row.mask, (analysis.width, analysis.height))
        metrics = pixel_metrics(analysis.heatmap, truth, analysis.threshold, analysis.relative_cut)
        scores = (f", pixel AUC {metrics['pixel_auc']:.3f}, F1 at {analysis.threshold} (cut {analysis.relative_cut}) "
                  f"{metrics['pixel_f1_fixed']:.3f}")
    print(f"{args.out}: image score {analysis.score:.3f}{scores}; model sha256 {model['sha256'][:12]}")


if __name__ == "__main__":
    main()
