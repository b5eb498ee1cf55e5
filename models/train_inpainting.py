"""Train the DeepFill-style generator (models/deepfill.py) on a CPU, resumably.

    nice -n 10 python -m models.train_inpainting --config models/configs/inpaint-cpu.json --max-minutes 20
    nice -n 10 python -m models.train_inpainting --config models/configs/inpaint-cpu.json --resume --max-minutes 20

Data: random crops of the training photos (BSDS500 train, Sun–Hays 80, Urban100; never
BSDS test, and not the camera files, whose sizes vary wildly), downscaled by a random factor
first so a crop holds a scene rather than a texture. Holes: DeepFill v2 brush strokes,
rectangles and BSDS object shapes (train segmentations), slightly dilated as a removal
mask is. Held-out: fixed crops and holes on BSDS *val*, scored every few minutes (L1 and
PSNR inside the hole).

Loss: L1 on the coarse and the refined output (hole and known pixels averaged apart, so a
small hole still counts), plus ``adv_weight`` × the SN-PatchGAN hinge loss on the refined
composite. Writes runs/<name>/: config.json, log.jsonl, ckpt.pt (generator, discriminator,
both optimisers, step), loss.png, and final.pt (generator only) once ``steps`` are done.
The data is a pure function of (seed, sample index): a resumed run sees what an
uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models import shapes, synthesis
from models.deepfill import DeepFillConfig, DeepFillGenerator, PatchDiscriminator, hinge_d_loss, hinge_g_loss
from models.train import REPO_ROOT, Run
from models.train_plot import _running_mean
from spancore import holes


@dataclass
class InpaintConfig:
    name: str = "inpaint-cpu"
    cnum: int = 16
    size: int = 128                 # training crop side (px)
    batch_size: int = 8
    steps: int = 4000               # the run is done (final.pt) after this many steps
    lr: float = 2e-4                # Adam, both networks, betas (0.5, 0.999) as DeepFill v2
    adv_weight: float = 0.02        # generator's hinge loss weight against the L1 terms
    gan_start: int = 300            # steps of L1 only before the discriminator joins
    log_every: int = 10
    val_every_minutes: float = 4.0
    val_samples: int = 32
    seed: int = 0
    threads: int = 1
    checkpoint_minutes: float = 3.0
    runs_dir: str = "runs"
    # A new run (not --resume) may start from a shipped generator's manifest (e.g.
    # "weights/inpaint/manifest.json"): its weights and step, so the data stream and the GAN
    # phase continue where it stopped; the discriminator and the optimisers start fresh.
    init_onnx: str | None = None
    # Run (models/train.py) wants these two
    device: str = "cpu"
    amp: str = "off"

    @classmethod
    def load(cls, path: str | Path) -> InpaintConfig:
        data = json.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown inpainting settings: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        root = Path(self.runs_dir)
        return (root if root.is_absolute() else REPO_ROOT / root) / self.name


# ----------------------------------------------------------------------------- data

def training_photos(split: str) -> list[synthesis.Photo]:
    """``train``: BSDS train + Sun–Hays + Urban100 (synthesis' train list without the camera
    files); ``val``: BSDS val. BSDS test is never listed."""
    photos = synthesis.list_photos(split)
    return [p for p in photos if "exif-samples" not in p.path.parts]


@functools.lru_cache(maxsize=None)
def _small_photo(path: Path, max_side: int = 512) -> np.ndarray:
    """The photo with its long side at most max_side (cached: every crop reads from this)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(im).copy()


@functools.lru_cache(maxsize=None)
def _segments(path: Path) -> np.ndarray | None:
    return np.asarray(Image.open(path)).copy() if path.exists() else None


def scene_crop(rng: np.random.Generator, photo: synthesis.Photo, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A size×size crop after a random downscale (short side size..1.6·size... up to the photo's own),
    with the matching crop of the BSDS segmentation when there is one."""
    img = _small_photo(photo.path)
    seg = _segments(photo.segments) if photo.segments is not None else None
    if seg is not None and seg.shape[:2] != img.shape[:2]:
        seg = cv2.resize(seg, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    h, w = img.shape[:2]
    short = rng.uniform(size, max(size, min(h, w, 2.5 * size)))
    s = short / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    seg = None if seg is None else cv2.resize(seg, (nw, nh), interpolation=cv2.INTER_NEAREST)
    y, x = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
    img = img[y:y + size, x:x + size]
    seg = None if seg is None else seg[y:y + size, x:x + size]
    if rng.random() < 0.5:
        img, seg = img[:, ::-1], None if seg is None else seg[:, ::-1]
    return np.ascontiguousarray(img), None if seg is None else np.ascontiguousarray(seg)


def object_hole(rng: np.random.Generator, seg: np.ndarray | None, lo: float = 0.03, hi: float = 0.3) -> np.ndarray | None:
    """A BSDS object shape (one segment, area lo..hi of the crop), dilated 1-4 px as a removal
    mask covers an object's rim; None when the crop has no such segment."""
    m = shapes.segment_shape(rng, seg, lo, hi)
    if m is None:
        return None
    r = int(rng.integers(1, 5))
    return cv2.dilate(m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))


def training_hole(rng: np.random.Generator, seg: np.ndarray | None, size: int) -> np.ndarray:
    """50% brush strokes, 25% a rectangle, 25% an object shape (strokes if the crop has none)."""
    u = rng.random()
    if u < 0.25:
        m = object_hole(rng, seg)
        if m is not None:
            return m
    elif u < 0.5:
        return holes.random_rectangle(rng, size, size, 0.15, 0.5)
    return holes.brush_strokes(rng, size, size)


def sample(seed: int, index: int, photos: list[synthesis.Photo], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``index`` of ``seed``: (image uint8 size×size×3, hole uint8 size×size), the same on every resume."""
    rng = synthesis.sample_rng(seed, index)
    img, seg = scene_crop(rng, photos[int(rng.integers(len(photos)))], size)
    return img, training_hole(rng, seg, size)


def batch_of(seed: int, start: int, n: int, photos, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [sample(seed, i, photos, size) for i in range(start, start + n)]
    image = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy()).float()
    mask = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].astype(np.float32))
    return image, mask


VAL_SEED = 10_000


def validation_set(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed held-out crops and holes on BSDS val (their own segmentations for object holes)."""
    return batch_of(VAL_SEED, 0, n, training_photos("val"), size)


# ----------------------------------------------------------------------------- losses and scores

def masked_l1(pred_pm1: torch.Tensor, target_pm1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 inside the hole and outside it, each averaged over its own pixels, summed."""
    d = (pred_pm1 - target_pm1).abs()
    hole = (d * mask).sum() / (mask.sum() * 3).clamp_min(1)
    known = (d * (1 - mask)).sum() / ((1 - mask).sum() * 3).clamp_min(1)
    return hole + known


def hole_scores(filled: np.ndarray | torch.Tensor, original, mask) -> tuple[float, float]:
    """(L1 in 0..255 units, PSNR in dB) over the hole pixels of a batch (or one image)."""
    f = torch.as_tensor(np.asarray(filled, np.float64) if isinstance(filled, np.ndarray) else filled.double())
    o = torch.as_tensor(np.asarray(original, np.float64) if isinstance(original, np.ndarray) else original.double())
    m = torch.as_tensor(np.asarray(mask, np.float64) if isinstance(mask, np.ndarray) else mask.double())
    m = m.expand_as(f) if m.dim() == f.dim() else m.unsqueeze(-1).expand_as(f)
    n = m.sum().clamp_min(1)
    l1 = float(((f - o).abs() * m).sum() / n)
    mse = float((((f - o) ** 2) * m).sum() / n)
    return l1, 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(gen: DeepFillGenerator, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    gen.eval()
    coarse_raw, refined_raw = gen(images, masks)
    gen.train()
    coarse = torch.clamp((coarse_raw + 1) * 127.5 * masks + images * (1 - masks), 0, 255).round()
    refined = torch.clamp((refined_raw + 1) * 127.5 * masks + images * (1 - masks), 0, 255).round()
    c_l1, c_psnr = hole_scores(coarse, images, masks)
    r_l1, r_psnr = hole_scores(refined, images, masks)
    return {"val_l1_coarse": c_l1, "val_psnr_coarse": c_psnr, "val_l1": r_l1, "val_psnr": r_psnr}


# ----------------------------------------------------------------------------- loop

def train(config: InpaintConfig, *, resume: bool = False, max_minutes: float | None = None) -> Path | None:
    """Train until ``config.steps`` (returns final.pt) or ``max_minutes`` (returns None: resume later)."""
    torch.set_num_threads(config.threads)
    cv2.setNumThreads(1)
    run = Run(config, resume=resume, max_minutes=max_minutes)  # type: ignore[arg-type]  # duck-typed config
    torch.manual_seed(config.seed)
    device = run.device
    gen = DeepFillGenerator(DeepFillConfig(cnum=config.cnum)).to(device)
    disc = PatchDiscriminator(config.cnum).to(device)  # before the optimisers: a resumed state follows
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
    step = 0
    state = run.load()
    if state is not None:
        gen.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
        run.log(event="resumed", step=step)
    elif config.init_onnx:
        from models.export_inpainting import generator_from_onnx

        init = generator_from_onnx(REPO_ROOT / config.init_onnx)
        if init["config"]["cnum"] != config.cnum:
            raise ValueError(f"{config.init_onnx} has cnum {init['config']['cnum']}, the config {config.cnum}")
        gen.load_state_dict(init["state_dict"])
        step = int(init["step"])
        run.log(event="started", init_onnx=config.init_onnx, step=step)
    else:
        run.log(event="started", generator_params=sum(p.numel() for p in gen.parameters()),
                discriminator_params=sum(p.numel() for p in disc.parameters()))
    # device "cpu" (the shipped run) or "cuda"/"auto" (the device tool): the networks and every
    # batch live on run.device; samples are still drawn on the CPU, a pure function of (seed, index).
    photos = training_photos("train")
    val_images, val_masks = (t.to(device) for t in validation_set(config.val_samples, config.size))

    def save() -> None:
        run.save({"generator": gen.state_dict(), "discriminator": disc.state_dict(), "opt_g": opt_g.state_dict(),
                  "opt_d": opt_d.state_dict(), "step": step, "config": config.to_dict()}, plot=False)
        plot_log(run.dir / "log.jsonl", run.dir / "loss.png")

    def validate() -> None:
        run.log(step=step, **evaluate(gen, val_images, val_masks))

    if state is None:
        validate()
    last_val = time.monotonic()
    gen.train()
    disc.train()
    while step < config.steps:
        if run.out_of_time():
            validate()
            save()
            run.log(event="paused", step=step, reason="max-minutes")
            return None
        t0 = time.monotonic()
        image, mask = batch_of(config.seed, step * config.batch_size, config.batch_size, photos, config.size)
        image, mask = image.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        target = image / 127.5 - 1
        coarse, refined = gen(image, mask)
        composite = refined * mask + target * (1 - mask)
        use_gan = step >= config.gan_start
        l1 = masked_l1(coarse, target, mask) + masked_l1(refined, target, mask)
        g_adv = hinge_g_loss(disc(composite, mask)) if use_gan else torch.zeros((), device=device)
        loss = l1 + config.adv_weight * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        d_loss = torch.zeros((), device=device)
        if use_gan:
            d_loss = hinge_d_loss(disc(target, mask), disc(composite.detach(), mask))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        step += 1
        if step % config.log_every == 0:
            run.log(step=step, loss=loss.item(), l1=l1.item(), g_adv=g_adv.item(), d_loss=d_loss.item(),
                    hole_share=float(mask.mean()), seconds_per_step=round(time.monotonic() - t0, 3))
        if time.monotonic() - last_val > 60 * config.val_every_minutes:
            validate()
            last_val = time.monotonic()
        if run.checkpoint_due():
            save()
    validate()
    save()
    final = run.dir / "final.pt"
    torch.save({**gen.to("cpu").checkpoint(), "step": step, "train_config": config.to_dict()}, final)
    run.log(event="finished", step=step, final=str(final))
    return final


def plot_log(log_path: Path, out: Path) -> None:
    """Training L1 (both stages summed), the hinge losses, and held-out hole L1/PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    steps = [r for r in records if "l1" in r]
    vals = [r for r in records if "val_l1" in r]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if steps:
        x = [r["step"] for r in steps]
        axes[0].plot(x, [r["l1"] for r in steps], color="tab:blue", lw=0.6, alpha=0.35)
        axes[0].plot(x, _running_mean([r["l1"] for r in steps]), color="tab:blue", lw=1.5,
                     label="L1 coarse + refined (hole + known)")
        gan = [r for r in steps if r["d_loss"] != 0]
        if gan:
            axes[1].plot([r["step"] for r in gan], _running_mean([r["d_loss"] for r in gan]), label="D hinge")
            axes[1].plot([r["step"] for r in gan], _running_mean([r["g_adv"] for r in gan]), label="G hinge")
    if vals:
        x = [r["step"] for r in vals]
        axes[2].plot(x, [r["val_l1"] for r in vals], "o-", color="tab:green", label="refined")
        axes[2].plot(x, [r["val_l1_coarse"] for r in vals], "o--", color="tab:olive", label="coarse")
        twin = axes[2].twinx()
        twin.plot(x, [r["val_psnr"] for r in vals], "s:", color="tab:red", label="refined PSNR (dB)")
        twin.set_ylabel("hole PSNR (dB)")
        twin.legend(loc="center right", fontsize=8)
    titles = ("training L1", "SN-PatchGAN hinge losses", "BSDS val holes: L1 (0..255)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Train the DeepFill-style inpainting generator (docs/inpainting.md).")
    parser.add_argument("--config", type=Path, default=None, help="JSON overrides of InpaintConfig")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None)
    args = parser.parse_args()
    cfg = InpaintConfig.load(args.config) if args.config else InpaintConfig()
    final = train(cfg, resume=args.resume, max_minutes=args.max_minutes)
    sys.exit(0 if final else 75)  # 75: stopped by --max-minutes, continue with --resume
