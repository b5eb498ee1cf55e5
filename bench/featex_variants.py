"""Cost of the Featex layouts: parameters, multiply-adds, measured forward time.

    .venv/bin/python bench/featex_variants.py                 # all presets, prints a Markdown table
    .venv/bin/python bench/featex_variants.py --presets pooled slim --repeats 5

Multiply-adds are counted from the config (convolutions, attention products; the
elementwise ops and resizes are left out, they are < 1 %) and cross-checked against
torch's FlopCounterMode on a small image. Times: one forward pass with torch (no_grad)
and with ONNX Runtime's CPU execution provider, both limited to --threads threads,
median of --repeats runs after one warm-up. The reference layout is run once, without
warm-up (it takes seconds per pass): its figure includes first-run overhead.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.export import export_onnx
from models.span import PRESETS, Span, SpanConfig


def featex_macs(config: SpanConfig, height: int, width: int) -> int:
    """Multiply-adds of Featex on one height x width image."""
    first = config.forensic_plain + 9 + config.forensic_bayar
    total = height * width * first * 3 * 25
    h, w, c = height, width, first
    for block, pool in zip(config.featex_blocks, config.featex_pool):
        for out in block:
            total += h * w * c * out * 9
            c = out
        if pool:
            h, w = -(-h // 2), -(-w // 2)
    return total + h * w * c * config.featex_dim * 9


def grid_macs(config: SpanConfig) -> int:
    """Multiply-adds of everything after Featex (a fixed cost per image: the working grid)."""
    d = config.attention_dim
    per_pixel = config.featex_dim * d  # outlier transform
    for _ in config.dilations:
        per_pixel += d * d + 2 * d * 9 * d  # query, keys, values
        per_pixel += 2 * 9 * d  # 9 logits, weighted sum of 9 values
        per_pixel += 9 * (d * d + d * 2 * d + 2 * d * d)  # feed-forward 3x3 convs
    widths = (d, *config.head_widths, 1)
    per_pixel += sum(25 * a * b for a, b in zip(widths, widths[1:]))
    return per_pixel * config.grid[0] * config.grid[1]


def counted_conv_macs(model: Span, height: int, width: int) -> int:
    """torch's own count of convolution multiply-adds (FlopCounterMode reports 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_flop_counts()["Global"][torch.ops.aten.convolution] // 2


def timed(run, repeats: int, warmup: bool) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds of ``run()``.

    On a shared machine the wall time includes waiting for other processes; the CPU
    seconds divided by the thread count estimate the wall time on an idle machine.
    """
    if warmup:
        run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def measure(name: str, threads: int, repeats: int, sizes: list[tuple[int, int]], workdir: Path) -> dict:
    import onnxruntime as ort

    torch.manual_seed(0)
    config = SpanConfig.preset(name)
    model = Span(config).eval()
    check_h, check_w = 64, 48
    analytic = featex_macs(config, check_h, check_w) + grid_macs(config)
    counted = counted_conv_macs(model, check_h, check_w)
    row = {
        "preset": name,
        "params": model.parameter_count(),
        "featex_params": sum(p.numel() for p in model.featex.parameters()),
        "featex_macs_per_pixel": featex_macs(config, 512, 512) / (512 * 512),
        "grid_macs": grid_macs(config),
        "macs_512": featex_macs(config, 512, 512) + grid_macs(config),
        "count_check": counted / analytic,
        "times": {},
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    path = export_onnx(model, workdir / f"{name}.onnx")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    once = name == "reference"
    for height, width in sizes:
        image = torch.rand(1, 3, height, width) * 255.0
        row["macs_" + f"{width}x{height}"] = featex_macs(config, height, width) + grid_macs(config)
        feed = {"image": image.numpy()}
        with torch.no_grad():
            t_torch = timed(lambda: model(image), 1 if once else repeats, warmup=not once)
        t_ort = timed(lambda: session.run(["heatmap"], feed), 1 if once else repeats, warmup=not once)
        row["times"][(height, width)] = (t_torch, t_ort)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            sizes = [(512, 512)] if name == "reference" else [(512, 512), (768, 1024)]
            rows.append(measure(name, args.threads, args.repeats, sizes, Path(tmp)))

    load = os.getloadavg()[0]
    print(f"threads={args.threads}, torch {torch.__version__}, load average at end {load:.1f}")
    print(f"times: wall seconds (process CPU seconds / {args.threads} threads in brackets)\n")

    def cell(t: tuple[float, float]) -> str:
        return f"{t[0]:.2f} s ({t[1] / args.threads:.2f} s)"

    print(
        "| preset | params (Featex) | Featex MAC/pixel | grid part MAC/image | MAC @512×512 "
        "| torch 512×512 | ORT 512×512 | torch 1024×768 | ORT 1024×768 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t512 = r["times"][(512, 512)]
        big = r["times"].get((768, 1024))
        big_cells = f"{cell(big[0])} | {cell(big[1])}" if big else "not run | not run"
        print(
            f"| {r['preset']} | {r['params'] / 1e6:.2f} M ({r['featex_params'] / 1e6:.2f} M) "
            f"| {r['featex_macs_per_pixel'] / 1e6:.3f} M | {r['grid_macs'] / 1e9:.1f} G "
            f"| {r['macs_512'] / 1e9:.0f} G | {cell(t512[0])} | {cell(t512[1])} | {big_cells} |"
        )
    checks = ", ".join(f"{r['preset']} {r['count_check']:.3f}" for r in rows)
    print(f"\nFlopCounterMode conv MACs / analytic MACs at 64×48 (≈1 expected): {checks}")


if __name__ == "__main__":
    main()
