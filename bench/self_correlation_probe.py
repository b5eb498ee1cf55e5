"""Is a copy-move-aware branch worth training? A training-free probe of its core signal.

    python -m bench.self_correlation_probe [--pairs 120] [--seed 0] [--json out.json]
    python -m bench.self_correlation_probe --manifest ../shared/data/benchmarks/dev/manifest.csv --dataset noso

BusterNet-style copy-move branches compare every position of a feature map with every other
one: a copied region finds its source, an untouched photo (ideally) finds nothing but its
neighbours. Before training such a branch on this CPU, this measures how far the raw signal
goes with no training at all: per position, the best cosine similarity to any position more
than ``--min-distance`` cells away, summed up per image as the mean of the top 1 % (the
map's own image score). On the synthetic copy-moves it also scores each per-cell map against
the copy's truth (pixel AUC over the cells): does the signal mark the copy at all?

Descriptors compared (each at a stride of 8 pixels):
- ``featex``: the shipped detector's frozen Featex features (weights/span.pt), 256-d, the
  features a branch inside the network would see;
- ``pixels``: the 16x16 luma window around each cell, mean and contrast removed (a plain
  block-matching baseline, as in Fridrich et al. 2003);
- ``model``: the shipped map's image score (the engine as served), for reference.

Synthetic pairs as in bench/copy_move_evidence.py (BSDS500 val, never dev): one copy-move and
the same frame before the edit, saved alike. With ``--manifest`` the rows of one dataset of a
benchmark are scored instead (dev: for sanity only, nothing is chosen by it). Needs the train
extra (torch, the synthesis).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bench.copy_move_evidence import copy_move_pairs
from models.span import Span
from service.decode import decode_image
from service.engine import Engine
from service.evaluation.benchmark import read_benchmark
from service.settings import Settings
from spancore.scoring import image_scores, roc_auc

STRIDE = 8


def featex_descriptors(span: Span, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """(positions, 256) Featex features pooled to the stride, centred on the photo's mean, unit norm."""
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        features = span.featex(image, normalise=True)  # N x 256 x H/4 x W/4
        pooled = F.avg_pool2d(features, STRIDE // span.config.stride, ceil_mode=True)
    descriptors = pooled[0].flatten(1).T
    # Featex's unit-norm outputs share one dominant direction (every pair of positions scores
    # ~1.0 by cosine); what varies is the part around the photo's own mean.
    return F.normalize(descriptors - descriptors.mean(0, keepdim=True), dim=1), tuple(pooled.shape[2:])


def pixel_descriptors(rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
    """(positions, 256) zero-mean unit-norm 16x16 luma windows centred on each stride cell."""
    luma = torch.from_numpy(rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))[None, None]
    windows = F.unfold(F.pad(luma, (4, 4, 4, 4), mode="replicate"), 16, stride=STRIDE)[0].T  # positions x 256
    windows = windows - windows.mean(1, keepdim=True)
    shape = ((luma.shape[2] + 8 - 16) // STRIDE + 1, (luma.shape[3] + 8 - 16) // STRIDE + 1)
    return F.normalize(windows, dim=1), shape


def far_matches(descriptors: torch.Tensor, shape: tuple[int, int], min_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Per position, the best cosine similarity to a position at least ``min_distance`` cells
    away (s1), and the best one also that far from where s1 was found (s2). Flat or repeated
    content matches many places (s1 ~ s2); a copy matches its source alone (s1 >> s2), which
    is Lowe's ratio test and what a BusterNet branch's sorted top-k similarities carry."""
    h, w = int(shape[0]), int(shape[1])
    similarity = descriptors @ descriptors.T
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()

    def near(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((ys[a][:, None] - ys[b][None]).abs() < min_distance) & ((xs[a][:, None] - xs[b][None]).abs() < min_distance)

    everyone = torch.arange(h * w)
    similarity[near(everyone, everyone)] = -1.0
    first, where = similarity.max(1)
    similarity[near(where, everyone)] = -1.0  # row p: positions near p's best match
    second = similarity.max(1).values
    return first.reshape(h, w).numpy(), second.reshape(h, w).numpy()


def top_mean(values: np.ndarray) -> float:
    """The map's own image score (mean of the top 1 %), applied to a per-cell match map."""
    return float(image_scores(values[None])[0])


def cell_truth(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The truth mask on the cell grid: a cell is copied where most of its area is."""
    cells = Image.fromarray((mask > 0).astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(cells) > 127


def score_photo(span: Span, engine: Engine, rgb: np.ndarray, min_distance: int,
                mask: np.ndarray | None = None) -> dict[str, float | None]:
    """Image scores of each signal; with a truth mask also ``*_pixel_auc``: how well the per-cell
    map itself marks the copied cells."""
    out: dict[str, float | None] = {"model": float(image_scores(engine.predict(rgb)[None])[0])}
    for name, (descriptors, shape) in (("featex", featex_descriptors(span, rgb)), ("pixels", pixel_descriptors(rgb))):
        first, second = far_matches(descriptors, shape, min_distance)
        for signal, cells in ((name, first), (f"{name}_distinct", first - second)):
            out[signal] = top_mean(cells)
            if mask is not None:
                out[f"{signal}_pixel_auc"] = roc_auc(cells.ravel(), cell_truth(mask, shape).ravel())
    return out


def synthetic_rows(span: Span, engine: Engine, pairs: int, seed: int, size: int, min_distance: int) -> list[dict]:
    return [{"pair": photo.pair, "label": photo.label, **score_photo(span, engine, photo.rgb, min_distance, photo.mask)}
            for photo in copy_move_pairs(pairs, seed, size)]


def manifest_rows(span: Span, engine: Engine, manifest: Path, dataset: str, min_distance: int) -> list[dict]:
    """One dataset's rows of a benchmark, decoded as `span evaluate` decodes them; a row
    without a mask is pristine (label 0), as there."""
    settings = engine.settings
    return [{"id": row.id, "label": int(row.mask is not None),
             **score_photo(span, engine, decode_image(row.image.read_bytes(), max_pixels=settings.max_pixels,
                                                      min_side=settings.min_side).rgb, min_distance)}
            for row in read_benchmark(manifest) if row.dataset == dataset]


SIGNALS = ("featex", "featex_distinct", "pixels", "pixels_distinct")


def summarise(rows: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Image AUC of each score over all photos, and the mean per-cell pixel AUC of each signal
    over the copy-moves whose truth covers some but not all cells."""
    labels = np.array([r["label"] for r in rows], dtype=bool)
    image_auc = {name: roc_auc(np.array([r[name] for r in rows]), labels) for name in ("model", *SIGNALS)}
    pixel_auc = {}
    for name in SIGNALS:
        values = [r[f"{name}_pixel_auc"] for r in rows if r.get(f"{name}_pixel_auc") is not None]
        if values:
            pixel_auc[name] = float(np.mean(values))
    return image_auc, pixel_auc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--min-distance", type=int, default=3, help="cells of 8 px a match must be away")
    parser.add_argument("--manifest", type=Path, help="score one dataset of a benchmark instead")
    parser.add_argument("--dataset", default="noso")
    parser.add_argument("--checkpoint", type=Path, default=Path("weights/span.pt"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    span = Span.from_checkpoint(args.checkpoint).eval()
    engine = Engine.from_settings(Settings())
    if args.manifest:
        rows = manifest_rows(span, engine, args.manifest, args.dataset, args.min_distance)
    else:
        rows = synthetic_rows(span, engine, args.pairs, args.seed, args.size, args.min_distance)
    engine.close()
    image_auc, pixel_auc = summarise(rows)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                         "image_auc": image_auc, "pixel_auc": pixel_auc}, indent=2))
    print(f"{len(rows)} photos ({sum(r['label'] for r in rows)} copy-moved): image AUC "
          + ", ".join(f"{name} {auc:.3f}" for name, auc in image_auc.items()))
    if pixel_auc:
        print("inside the copy-moves, per-cell pixel AUC (mean over photos): "
              + ", ".join(f"{name} {auc:.3f}" for name, auc in pixel_auc.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
