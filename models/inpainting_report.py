"""The generator against OpenCV Telea and the repository's patch fill on held-out BSDS val holes,
and the figure for docs/inpainting.md.

    python -m models.inpainting_report runs/inpaint-cpu/ckpt.pt --out docs/inpainting

writes docs/inpainting-grid.png and docs/inpainting-scores.json.

Holes and crops are the training run's fixed validation set (models/train_inpainting.py:
validation_set, BSDS val, seed 10000): brush strokes, rectangles and object shapes. The deep
fill scored here is the shipped ONNX file (what `span forge` and the synthesis run), the coarse
column of the grid comes from the torch checkpoint. Scores are over hole pixels only.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from models import synthesis
from models.deepfill import DeepFillGenerator
from models.train_inpainting import hole_scores, validation_set
from spancore.inpaint import WEIGHTS_DIR, Inpainter


def load_generator(path: Path) -> DeepFillGenerator:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "generator" in ckpt:
        return DeepFillGenerator.from_checkpoint({"config": {"cnum": ckpt["config"]["cnum"]},
                                                  "state_dict": ckpt["generator"]}).eval()
    return DeepFillGenerator.from_checkpoint(ckpt).eval()


def fills(images: np.ndarray, masks: np.ndarray, onnx: Inpainter, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Each method's composited result (uint8 H×W×3) per sample."""
    out: dict[str, list[np.ndarray]] = {"deepfill": [], "telea": [], "patch": []}
    for i, (img, m) in enumerate(zip(images, masks)):
        out["deepfill"].append(onnx.fill_window(img, m))
        out["telea"].append(cv2.inpaint(img, m, 5, cv2.INPAINT_TELEA))
        shifted = synthesis.patch_fill(synthesis.sample_rng(seed, i), img, m.astype(np.float32))
        out["patch"].append(np.where(m[..., None] > 0, shifted, img))
    return out


def score(results: dict[str, list[np.ndarray]], images: np.ndarray, masks: np.ndarray) -> dict[str, dict]:
    table = {}
    for name, filled in results.items():
        l1, psnr = hole_scores(np.stack(filled), images, masks)
        per = [hole_scores(f, o, m)[1] for f, o, m in zip(filled, images, masks)]
        table[name] = {"l1": round(l1, 2), "psnr_db": round(psnr, 2), "psnr_db_mean_per_image": round(float(np.mean(per)), 2)}
    return table


def grid(rows: list[list[np.ndarray]], header: list[str], path: Path, tile: int = 128) -> None:
    pad, top = 4, 18
    w = len(header) * (tile + pad) + pad
    canvas = Image.new("RGB", (w, top + len(rows) * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(header):
        draw.text((pad + j * (tile + pad) + 4, 3), name, fill="black")
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            canvas.paste(Image.fromarray(cell).resize((tile, tile), Image.Resampling.NEAREST),
                         (pad + j * (tile + pad), top + i * (tile + pad)))
    canvas.save(path, optimize=True)


def main(checkpoint: Path, prefix: Path, n: int = 64, grid_rows: int = 8, size: int = 128) -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    images_t, masks_t = validation_set(n, size)
    images = images_t.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    masks = masks_t[:, 0].numpy().astype(np.uint8)
    onnx = Inpainter(WEIGHTS_DIR)
    results = fills(images, masks, onnx)
    table = {"samples": n, "size": size, "hole_share_mean": round(float(masks.mean()), 4),
             "methods": score(results, images, masks)}
    gen = load_generator(checkpoint)
    with torch.no_grad():
        coarse, refined = gen(images_t[:grid_rows], masks_t[:grid_rows])
    as_u8 = lambda t: np.clip(np.rint((t.permute(0, 2, 3, 1).numpy() + 1) * 127.5), 0, 255).astype(np.uint8)  # noqa: E731
    coarse_u8, refined_u8 = as_u8(coarse), as_u8(refined)
    rows = []
    for i in range(grid_rows):
        m = masks[i][..., None] > 0
        masked = np.where(m, np.array([255, 255, 255], np.uint8), images[i])
        rows.append([masked, np.where(m, coarse_u8[i], images[i]), results["deepfill"][i], results["telea"][i],
                     results["patch"][i], images[i]])
    prefix.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, ["masked input", "coarse", "refined (ONNX)", "OpenCV Telea", "patch fill", "original"],
         prefix.with_name(prefix.name + "-grid.png"))
    prefix.with_name(prefix.name + "-scores.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/inpainting"), help="prefix of the two files")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(main(args.checkpoint, args.out, args.samples), indent=2))
