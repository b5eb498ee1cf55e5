"""Training throughput (samples/s) per stage, preset, precision and thread count.

    python bench/train_throughput.py --presets slim pooled --threads 1 2 --amp off bf16
    python bench/train_throughput.py --device cuda --batch 32 --patch 256   # on the GPU

Times optimiser steps on a fixed synthetic batch (data loading excluded: synthesis runs in
DataLoader workers and is benched by --synthesis), best of --repeats after a warm-up step.
Stage 1: Featex + classification head, all trainable. Stage 2: Featex frozen, attention + head trainable.
"""
from __future__ import annotations

import argparse
import time

import torch

from models import synthesis
from models.devices import pick_amp
from models.losses import localisation_loss
from models.span import Span, SpanConfig
from models.train import ManipulationClassifier


def step_time(stage: int, preset: str, batch: int, patch: int, amp: str, device: torch.device, repeats: int) -> float:
    torch.manual_seed(0)
    span = Span(SpanConfig.preset(preset)).to(device)
    image = torch.rand(batch, 3, patch, patch, device=device) * 255
    if stage == 1:
        model = ManipulationClassifier(span.featex, len(synthesis.STAGE1_CLASSES)).to(device)
        label = torch.randint(0, len(synthesis.STAGE1_CLASSES), (batch,), device=device)

        def loss_fn():
            return torch.nn.functional.cross_entropy(model(image).float(), label)
    else:
        model = span
        span.freeze_featex()
        mask = (torch.rand(batch, 1, patch, patch, device=device) > 0.9).float()

        def loss_fn():
            return localisation_loss(span.grid_logits(image), mask, 0.5)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    dtype = pick_amp(amp, device)
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def synthesis_rate(patch: int, n: int = 64) -> tuple[float, float]:
    """Samples/s of one process synthesising stage-1 patches and stage-2 forgeries."""
    rates = []
    for dataset in (synthesis.ManipulationTypeDataset("train", size=patch, seed=1),
                    synthesis.ForgeryDataset("train", size=patch, seed=1)):
        for i in range(16):
            dataset[i]  # warm the photo cache
        start = time.perf_counter()
        for i in range(1000, 1000 + n):
            dataset[i]
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["slim"])
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    parser.add_argument("--amp", nargs="+", default=["off", "bf16"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--synthesis", action="store_true", help="also time the data synthesis (one process)")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    print(f"device={device} batch={args.batch} patch={args.patch}")
    print(f"{'stage':>5} {'preset':>9} {'threads':>7} {'amp':>5} {'s/step':>8} {'samples/s':>10}")
    for stage in args.stages:
        for preset in args.presets:
            for threads in args.threads:
                torch.set_num_threads(threads)
                for amp in args.amp:
                    t = step_time(stage, preset, args.batch, args.patch, amp, device, args.repeats)
                    print(f"{stage:>5} {preset:>9} {threads:>7} {amp:>5} {t:8.3f} {args.batch / t:10.2f}", flush=True)
    if args.synthesis:
        cv_threads = synthesis.cv2.getNumThreads()
        synthesis.worker_init(0)
        s1, s2 = synthesis_rate(args.patch)
        synthesis.cv2.setNumThreads(cv_threads)
        print(f"synthesis (1 process, patch {args.patch}): stage 1 {s1:.1f} samples/s, stage 2 {s2:.1f} samples/s")


if __name__ == "__main__":
    main()
