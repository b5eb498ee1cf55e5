"""Train SPAN in two stages from one JSON config (models/configs/*.json).

    span train --config models/configs/cpu-small.json            # fresh run into runs/<name>/
    span train --config models/configs/gpu-full.json --resume --max-minutes 9   # one resumable chunk

Stage 1 (as ManTra-Net): Featex plus a small classification head learns to name the
operation, and its parameter range, that produced a patch (models.synthesis.STAGE1_CLASSES).
Stage 2 (as SPAN): Featex frozen; the outlier transform, pixel-attention blocks and head
learn localisation on synthesised forgeries (pixel BCE + optional Dice on the working
grid), validated every N steps on BSDS-val forgeries (pixel AUC of the full-size heatmap,
the map that ships); the best validated weights are kept.

Everything a run needs is in its config file; everything it produces is in runs/<name>/:
config.json, log.jsonl (one JSON object per logged step or validation), loss.png,
ckpt.pt (resumable: stage, step, model, optimiser, scaler, best score), featex.pt and stage1-classifier.pt
(stage-1 result), best.pt and final.pt (``Span.checkpoint()`` dicts: {'config',
'state_dict', ...}, what ``span export --checkpoint`` reads) and span-config.json.

Data is a pure function of (seed, sample index), so resuming at step s simply starts
the sampler at s × batch size: a resumed run sees the same samples as an unbroken one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import synthesis
from models.devices import pick_amp, pick_device
from models.layers import tf1_bilinear_resize
from models.losses import localisation_loss, operating_point
from models.operations import STAGE1_CLASS_NAMES
from models.span import Featex, Span, SpanConfig
from models.train_config import REPO_ROOT, Stage1Settings, StageSettings, TrainConfig
from models.train_plot import plot_log


# ----------------------------------------------------------------------------- stage-1 model

class ManipulationClassifier(nn.Module):
    """Featex with a small head naming the operation behind a patch (stage 1 only).

    Average and max pooling side by side: an operation applied to half a patch must
    still be seen when the other half is pristine.
    """

    def __init__(self, featex: Featex, n_classes: int, width: int = 128):
        super().__init__()
        self.featex = featex
        self.project = nn.Sequential(nn.Conv2d(featex.out_channels, width, 1), nn.ReLU(inplace=True))
        self.classify = nn.Linear(2 * width, n_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.project(self.featex(image))
        return self.classify(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))


def he_init(featex: Featex) -> None:
    """He (Kaiming) initialisation of Featex's convolutions, as for any plain VGG without
    batch norm. torch's default init shrinks the signal layer after layer (feature std
    0.011 before the final transform vs 0.19 with this, measured on slim), and stage 1
    then sat at chance level for its first 90 steps on the CPU. The SRM kernels (fixed)
    and the Bayar layer (its constraint defines it) are left as they are."""
    for module in featex.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@torch.no_grad()
def calibrate_featex(featex: Featex, images: torch.Tensor) -> None:
    """Data-dependent init (LSUV-style, Mishkin & Matas 2016) of Featex's convolutions after
    the forensic layer: layer by layer, scale and shift each channel to zero mean, unit
    std on a batch of real patches. Without it the ReLU stack's common-mode offset grows
    with depth and, after the final L2 normalisation, every patch got nearly the same
    feature vector (spread across patches 0.0006; 0.033 after calibration)."""
    h = featex.forensic(images)  # 0..255 in: the layer scales its input itself
    for layer in [*featex.blocks, featex.transform]:
        if isinstance(layer, nn.Conv2d):
            out = layer(h)
            mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6)
            layer.weight.div_(std.view(-1, 1, 1, 1))
            layer.bias.sub_(mean).div_(std)
        h = layer(h)


# ----------------------------------------------------------------------------- the run

class Run:
    """Paths, log, checkpoints and the wall-clock deadline of one training run."""

    def __init__(self, config: TrainConfig, resume: bool, max_minutes: float | None = None):
        self.config = config
        self.dir = config.run_dir
        self.ckpt_path = self.dir / "ckpt.pt"
        if self.ckpt_path.exists() and not resume:
            raise FileExistsError(f"{self.ckpt_path} exists: pass --resume to continue it, or change 'name'")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        self.device = pick_device(config.device)
        self.amp = pick_amp(config.amp, self.device)
        self.deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else None
        self.last_save = time.monotonic()
        self.started = time.monotonic()

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def log(self, **record: Any) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        with open(self.dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    def load(self) -> dict[str, Any] | None:
        if not self.ckpt_path.exists():
            return None
        return torch.load(self.ckpt_path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any], plot: bool = True) -> None:
        """Atomic: a run killed mid-write keeps its previous checkpoint. Redraws loss.png."""
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)
        self.last_save = time.monotonic()
        if plot:
            plot_log(self.dir / "log.jsonl", self.dir / "loss.png")

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_save > 60 * self.config.checkpoint_minutes

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def lr_at(step: int, progress: float, s: StageSettings) -> float:
    """Linear warm-up over s.warmup_steps, then cosine decay to s.lr * s.min_lr_ratio as
    progress (0..1, see ``fit``) reaches 1."""
    if step <= s.warmup_steps:
        return s.lr * step / max(1, s.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * cosine)


def make_loader(dataset, start: int, stop: int, batch_size: int | None, run: Run) -> torch.utils.data.DataLoader:
    """Sample indices start..stop-1 in order: the data is a function of the index, so this is resumable.
    ``batch_size=None``: the dataset's items are whole batches (StepBatches)."""
    workers = run.config.num_workers
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=range(start, stop), num_workers=workers,
        worker_init_fn=synthesis.worker_init, pin_memory=run.device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None, drop_last=batch_size is not None,
        # not fork: a worker forked after OpenCV/OpenMP threads ran in this process can
        # inherit a held lock and hang forever (seen here at the start of stage 2)
        multiprocessing_context="forkserver" if workers else None,
    )


class StepBatches(torch.utils.data.Dataset):
    """Stage-2 batches by step index: a batch of ``small`` patches at most steps, a batch of
    ``large`` crops every ``every``-th step (LargeCrops). Step s draws the small samples
    s*bs .. s*bs+bs-1, the same ones a plain per-sample loader draws, so runs without large
    steps are unchanged; large step s draws large samples s*large_bs onward."""

    def __init__(self, small, batch_size: int, steps: int, large=None, large_batch_size: int = 1, every: int = 0):
        self.small, self.batch_size, self.steps = small, batch_size, steps
        self.large, self.large_batch_size, self.every = large, large_batch_size, every

    def __len__(self) -> int:
        return self.steps

    def is_large(self, step_index: int) -> bool:
        return self.large is not None and self.every > 0 and step_index % self.every == self.every - 1

    def __getitem__(self, step_index: int):
        if self.is_large(step_index):
            source, bs = self.large, self.large_batch_size
        else:
            source, bs = self.small, self.batch_size
        return torch.utils.data.default_collate([source[step_index * bs + j] for j in range(bs)])


def fit(run: Run, stage: int, model: nn.Module, optimizer: torch.optim.Optimizer, settings: StageSettings,
        dataset, start_step: int, step_loss: Callable[[list], tuple[torch.Tensor, dict]],
        resumed: dict | None = None, extra_state: Callable[[], dict] = dict,
        validate: Callable[[int], None] | None = None) -> bool:
    """The optimisation loop shared by both stages. Returns True when the stage is done,
    False when stopped by the run's deadline (checkpoint saved; continue with resume).

    A stage is done after ``settings.steps`` steps or, when ``settings.minutes`` is set,
    after that much training time, whichever comes first; progress (what the lr schedule
    follows) is the larger of the two fractions, so a time-budgeted run on a shared or
    unknown machine still anneals fully. Step-only stages are exactly reproducible.
    """
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp == torch.float16)
    if resumed and resumed.get("scaler"):
        scaler.load_state_dict(resumed["scaler"])
    stage_seconds = resumed.get("stage_seconds", 0.0) if resumed else 0.0
    budget = 60 * settings.minutes if settings.minutes else None
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def progress(step: int) -> float:
        return max(step / settings.steps, stage_seconds / budget if budget else 0.0)

    def save(step: int) -> None:
        run.save({"stage": stage, "step": step, "stage_seconds": stage_seconds, "model": model.state_dict(),
                  "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                  "config": run.config.to_dict(), **extra_state()})

    if progress(start_step) >= 1:
        return True
    bs = settings.batch_size
    if isinstance(dataset, StepBatches):  # indexed by step, each item a whole batch
        loader = make_loader(dataset, start_step, settings.steps, None, run)
    else:
        loader = make_loader(dataset, start_step * bs, settings.steps * bs, bs, run)
    model.train()
    window_start, window_samples = time.monotonic(), 0
    step, tick = start_step, time.monotonic()
    for batch in loader:
        step += 1
        lr = lr_at(step, progress(step), settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [b.to(run.device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
        with run.autocast():
            loss, metrics = step_loss(batch)
        if not torch.isfinite(loss):
            save(step - 1)
            raise FloatingPointError(f"stage {stage} step {step}: loss is {loss.item()}; checkpoint of step {step - 1} kept")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, settings.grad_clip))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        stage_seconds += time.monotonic() - tick
        tick = time.monotonic()
        done = progress(step) >= 1
        window_samples += len(batch[0])
        if step % settings.log_every == 0 or done:
            elapsed = time.monotonic() - window_start
            run.log(stage=stage, step=step, loss=loss.item(), lr=lr, grad_norm=grad_norm,
                    samples_per_s=round(window_samples / max(elapsed, 1e-9), 3),
                    stage_minutes=round(stage_seconds / 60, 2), **metrics)
            window_start, window_samples = time.monotonic(), 0
        if validate is not None and (step % settings.val_every == 0 or done):
            validate(step)
            model.train()
        if done or run.checkpoint_due() or run.out_of_time():
            save(step)
            if not done:
                if run.out_of_time():
                    run.log(stage=stage, step=step, event="stopped: --max-minutes reached; continue with --resume")
                    return False
        # validation and checkpoints count neither in throughput nor in the stage's time budget
        window_start += time.monotonic() - tick
        tick = time.monotonic()
        if done:
            return True
    return True


# ----------------------------------------------------------------------------- stages

def train_stage1(run: Run, span: Span, ckpt: dict | None) -> bool:
    s = run.config.stage1
    classifier = ManipulationClassifier(span.featex, len(synthesis.STAGE1_CLASSES)).to(run.device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    dataset = synthesis.ManipulationTypeDataset(
        "train", size=s.patch, length=s.steps * s.batch_size, seed=run.config.seed, half_prob=s.half_prob,
        data_dir=_data_dir(run.config))
    start = 0
    if ckpt is not None:
        classifier.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
    else:
        calibration = torch.stack([dataset[i][0] for i in range(max(8, min(64, 2 * s.batch_size)))])
        calibrate_featex(span.featex, calibration.to(run.device))

    def step_loss(batch):
        image, label = batch
        logits = classifier(image)
        loss = F.cross_entropy(logits.float(), label)
        return loss, {"accuracy": (logits.argmax(1) == label).float().mean().item()}

    if not fit(run, 1, classifier, optimizer, s, dataset, start, step_loss, ckpt):
        return False
    torch.save(classifier.state_dict(), run.dir / "stage1-classifier.pt")
    if s.val_samples:
        run.log(stage=1, event="validation", **evaluate_classification(classifier, run, s))
    return True


@torch.no_grad()
def evaluate_classification(classifier: ManipulationClassifier, run: Run, s: Stage1Settings) -> dict[str, Any]:
    """Stage-1 accuracy on BSDS-val patches, overall and per operation class."""
    dataset = synthesis.ManipulationTypeDataset("val", size=s.patch, length=s.val_samples,
                                                seed=20_000 + run.config.seed, half_prob=s.half_prob,
                                                data_dir=_data_dir(run.config))
    classifier.eval()
    labels, predictions = [], []
    for i in range(0, s.val_samples, s.batch_size):
        items = [dataset[j] for j in range(i, min(i + s.batch_size, s.val_samples))]
        with run.autocast():
            logits = classifier(torch.stack([x for x, _ in items]).to(run.device))
        predictions += logits.argmax(1).tolist()
        labels += [y for _, y in items]
    labels, predictions = np.array(labels), np.array(predictions)
    per_class = {name: round(float((predictions[labels == k] == k).mean()), 3)
                 for k, name in enumerate(STAGE1_CLASS_NAMES) if (labels == k).any()}
    return {"val_accuracy": float((labels == predictions).mean()), "val_accuracy_by_class": per_class}


def forgery_dataset(run: Run, span_config: SpanConfig, split: str, size: int, length: int,
                    seed: int, kind_weights: dict[str, float] | None = None,
                    cameras: str = "train") -> synthesis.ForgeryDataset:
    s = run.config.stage2
    return synthesis.ForgeryDataset(split, size=size, length=length, seed=seed,
                                    kind_weights=kind_weights or s.kind_weights,
                                    data_dir=_data_dir(run.config), recipe=synthesis.Recipe(**(s.recipe or {})),
                                    cues=span_config.cue_channels > 0, cameras=cameras)


LARGE_TRAINING_SEED = 40_000    # + the run's seed: the large-crop steps' own sample stream
LARGE_VALIDATION_SEED = 20_000  # + the run's seed: held-out cameras' crops, the second validation set


def large_validation_set(run: Run, span_config: SpanConfig, samples: int | None = None, seed: int | None = None,
                         ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[int]]:
    """(images, cues or None, masks, kinds) of large crops from the held-out cameras (never
    trained on), drawn with the large-crop steps' kinds: the second validation set."""
    large = run.config.stage2.large_crops()
    samples = large.val_samples if samples is None else samples
    dataset = forgery_dataset(run, span_config, "val", large.patch, samples,
                              LARGE_VALIDATION_SEED + run.config.seed if seed is None else seed,
                              large.kind_weights, cameras="held-out")
    return _stack(dataset, samples)


def _stack(dataset: synthesis.ForgeryDataset, samples: int):
    items = [dataset[i] for i in range(samples)]
    cues = torch.stack([i[1] for i in items]) if dataset.cues else None
    return (torch.stack([i[0] for i in items]), cues, torch.stack([i[-2] for i in items]),
            [i[-1] for i in items])


def validation_set(run: Run, span_config: SpanConfig, samples: int | None = None, seed: int | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[int]]:
    """(images, cues or None, masks, kinds) of BSDS-val forgeries: the run's validation set, or
    `samples` others drawn with `seed` (calibration, bench/image_score_candidates.py)."""
    s = run.config.stage2
    samples = s.val_samples if samples is None else samples
    dataset = forgery_dataset(run, span_config, "val", s.val_patch or s.patch, samples,
                              10_000 + run.config.seed if seed is None else seed)
    return _stack(dataset, samples)


@torch.no_grad()
def validation_heatmaps(span: Span, images: torch.Tensor, masks: torch.Tensor, run: Run, batch_size: int,
                        cues: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(heatmaps [N, H, W], truth [N, H, W] bool, BCE per batch): the full-size map that ships,
    i.e. sigmoid on the grid, then the network's own resize to the image size."""
    span.eval()
    heatmaps, losses = [], []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(run.device)
        c = None if cues is None else cues[i:i + batch_size].to(run.device)
        logits = frozen_featex_logits(span, x, run, c)
        losses.append(localisation_loss(logits, masks[i:i + batch_size].to(run.device), 0.0)[0].item())
        heatmaps.append(tf1_bilinear_resize(torch.sigmoid(logits.float()), tuple(x.shape[-2:])).cpu())
    return torch.cat(heatmaps)[:, 0].numpy(), masks[:, 0].numpy() >= 0.5, losses


def evaluate_localisation(span: Span, images: torch.Tensor, masks: torch.Tensor, run: Run,
                          batch_size: int, cues: torch.Tensor | None = None) -> dict[str, float | None]:
    """Pixel AUC of the full-size heatmap (the map that ships), per forged image and averaged,
    and pooled over all pixels; image AUC of the service's score (mean of the top 1%)."""
    from spancore.scoring import image_scores, roc_auc  # numpy only: the service's own maths

    heat, truth, losses = validation_heatmaps(span, images, masks, run, batch_size, cues)
    per_image = [roc_auc(h, t) for h, t in zip(heat, truth) if 0 < t.sum() < t.size]
    scores = image_scores(heat)
    threshold, f1 = operating_point(heat, truth, per_image=True)  # as span evaluate reports F1
    return {
        "val_threshold": threshold,
        "val_f1_at_threshold": f1,
        "val_loss_bce": float(np.mean(losses)),
        "val_pixel_auc": float(np.mean(per_image)) if per_image else None,
        "val_pixel_auc_pooled": roc_auc(heat, truth),
        "val_image_auc": roc_auc(scores, truth.reshape(len(truth), -1).any(1)),
    }


def frozen_featex_logits(span: Span, image: torch.Tensor, run: Run, cues: torch.Tensor | None = None) -> torch.Tensor:
    """Stage-2 forward: the frozen Featex in fp32, as the exported model runs it (cheap beside
    the attention blocks), the trainable part under the run's mixed precision."""
    features = None
    if span.config.use_featex:
        with torch.no_grad(), torch.autocast(run.device.type, enabled=False):
            features = span.featex(image.float())
    with run.autocast():
        return span.logits_from_features(features, cues)


def train_stage2(run: Run, span: Span, ckpt: dict | None) -> bool:
    s = run.config.stage2
    span.freeze_featex()
    span.featex.eval()
    optimizer = torch.optim.AdamW(span.trainable_parameters(), lr=s.lr, weight_decay=s.weight_decay)
    start, best = 0, {"val_pixel_auc": None}
    if ckpt is not None and ckpt["stage"] == 2:
        span.load_state_dict(ckpt["model"])
        if ckpt["step"] > 0:
            optimizer.load_state_dict(ckpt["optimizer"])
        start, best = ckpt["step"], ckpt.get("best", best)
    patches = forgery_dataset(run, span.config, "train", s.patch, s.steps * s.batch_size, run.config.seed + 1)
    val_images, val_cues, val_masks, _ = validation_set(run, span.config)
    large = s.large_crops()
    if large is None:
        dataset = patches
    else:
        crops = forgery_dataset(run, span.config, "train", large.patch, s.steps * large.batch_size,
                                LARGE_TRAINING_SEED + run.config.seed, large.kind_weights) if large.every else None
        dataset = StepBatches(patches, s.batch_size, s.steps, crops, large.batch_size, large.every)  # every 0: validation only
        large_val = large_validation_set(run, span.config)

    def step_loss(batch):
        image, *cues, mask, _kind = batch
        logits = frozen_featex_logits(span, image, run, cues[0] if cues else None)
        return localisation_loss(logits, mask, s.dice_weight, s.pos_weight, s.dice)

    def validate(step: int) -> None:
        metrics = evaluate_localisation(span, val_images, val_masks, run, s.batch_size, val_cues)
        score = metrics["val_pixel_auc"]
        if large is not None:  # chosen on both scales: a 256-px gain must not cost whole photos
            images, cues, masks, _ = large_val
            metrics.update({f"large_{k}": v for k, v in
                            evaluate_localisation(span, images, masks, run, large.batch_size, cues).items()})
            metrics["val_score"] = score = _mean_or_none(score, metrics["large_val_pixel_auc"])
        previous = best.get("val_score" if large is not None else "val_pixel_auc")
        improved = score is not None and (previous is None or score > previous)
        run.log(stage=2, step=step, event="validation", best=improved, **metrics)
        if improved:
            best.clear()
            best.update(metrics, step=step)
            torch.save(span.checkpoint(step=step, validation=metrics), run.dir / "best.pt")

    if start == 0 and run.config.init_checkpoint:
        validate(0)  # the starting weights on this run's validation set: kept unless training beats them
    return fit(run, 2, span, optimizer, s, dataset, start, step_loss, ckpt, lambda: {"best": best}, validate)


def _mean_or_none(*scores: float | None) -> float | None:
    return None if any(v is None for v in scores) else float(np.mean(scores))


def _repo_path(path: str) -> Path:
    """A path from a config: absolute, or relative to the repository (as runs_dir)."""
    return Path(path) if Path(path).is_absolute() else REPO_ROOT / path


def _data_dir(config: TrainConfig) -> Path | None:
    return None if config.data_dir is None else _repo_path(config.data_dir)


# ----------------------------------------------------------------------------- entry point

def train(config: TrainConfig, *, resume: bool = False, max_minutes: float | None = None) -> Path | None:
    """Run (or continue) both stages. Returns runs/<name>/final.pt when training is complete,
    None when stopped early by ``max_minutes`` (continue with resume=True)."""
    run = Run(config, resume, max_minutes)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(run, resume)
    finally:
        torch.set_num_threads(threads)  # the caller's process keeps its own setting


def _train(run: Run, resume: bool) -> Path | None:
    config = run.config
    ckpt = run.load() if resume else None
    torch.manual_seed(config.seed)
    span_config = config.span_config()
    span = Span(span_config)
    he_init(span.featex)  # then overwritten by featex_checkpoint or a resumed checkpoint, if any
    span = span.to(run.device)
    (run.dir / "span-config.json").write_text(json.dumps(span_config.to_dict(), indent=2) + "\n")
    run.log(event="start", resume_from=None if ckpt is None else {"stage": ckpt["stage"], "step": ckpt["step"]},
            device=str(run.device), amp=str(run.amp), threads=torch.get_num_threads(), span=span_config.name,
            parameters=span.parameter_count())

    if ckpt is None or ckpt["stage"] == 1:
        if ckpt is None and config.init_checkpoint:
            # Continue an earlier run: its Featex (frozen) and its stage-2 weights, a fresh optimiser
            # and schedule. Samples come from this config's seed, so use a seed the earlier run did not.
            init = torch.load(_repo_path(config.init_checkpoint), map_location="cpu", weights_only=False)
            if SpanConfig.from_dict(init["config"]) != span_config:
                raise ValueError(f"{config.init_checkpoint} holds a different architecture than this config")
            span.load_state_dict(init["state_dict"])
            run.log(event="initialised", path=config.init_checkpoint, step=init.get("step"),
                    validation=init.get("validation"))
        elif config.featex_checkpoint:
            # a featex.pt ({'state_dict': Featex's}) or a whole model's checkpoint (its featex.* part)
            state = torch.load(_repo_path(config.featex_checkpoint), map_location="cpu", weights_only=False)["state_dict"]
            if any(k.startswith("featex.") for k in state):
                state = {k[len("featex."):]: v for k, v in state.items() if k.startswith("featex.")}
            span.featex.load_state_dict(state)
            run.log(event="featex loaded", path=config.featex_checkpoint)
        elif not train_stage1(run, span, ckpt):
            return None
        torch.save({"config": span_config.to_dict(), "state_dict": span.featex.state_dict()}, run.dir / "featex.pt")
        ckpt = {"stage": 2, "step": 0, "model": span.state_dict(), "best": {"val_pixel_auc": None}}
        run.save({**ckpt, "config": config.to_dict()}, plot=False)
    if not train_stage2(run, span, ckpt):
        return None
    return finish(run, span)


def finish(run: Run, span: Span) -> Path:
    """final.pt: the best validated weights (the last ones if nothing was validated)."""
    best_path = run.dir / "best.pt"
    data = torch.load(best_path, map_location="cpu", weights_only=False) if best_path.exists() else span.checkpoint()
    validation = data.get("validation", {})
    data.update(trained=True, status=f"trained: run '{run.config.name}' (models/train.py), synthetic data only",
                training={"run": run.config.name, "config": run.config.to_dict(), "validation": validation,
                          "step": data.get("step")})
    final = run.dir / "final.pt"
    torch.save(data, final)
    run.log(event="finished", final=str(final), **{k: v for k, v in validation.items() if k.startswith("val_")})
    return final


def finish_stopped(config: TrainConfig) -> Path:
    """final.pt of a run that --max-minutes stopped, from its best validated weights, without
    training on: what the run would have written at its end, with its training record (run,
    config, step), which calibration and export carry into the manifest."""
    best = config.run_dir / "best.pt"
    if not best.exists():  # checked before Run, which would create the folder
        raise FileNotFoundError(f"{best} does not exist: the run has not validated anything to finish with")
    return finish(Run(config, resume=True), Span.from_checkpoint(torch.load(best, map_location="cpu", weights_only=False)))


if __name__ == "__main__":  # python -m models.train --config ... (where the `span` command is not installed)
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Train SPAN from a JSON config (docs/training.md).")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None, help="another seed of the config (runs/<name>-seed<N>/)")
    args = parser.parse_args()
    final = train(TrainConfig.load(args.config).with_seed(args.seed), resume=args.resume, max_minutes=args.max_minutes)
    sys.exit(0 if final else 75)  # 75: stopped by --max-minutes, continue with --resume (as `span train`)
