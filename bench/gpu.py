"""GPU figures for issue 6: torch CUDA fp32/fp16, ONNX Runtime CUDA EP (fp32/fp16, IO binding),
and the shipped engine's dynamic batcher on CUDA. Needs a CUDA machine; written and smoke-tested
on CPU (`--device cpu` runs the same code paths there with the CPU provider).

    python -m bench.gpu --out docs/performance.md            # on a machine with a GPU
    python -m bench.gpu --device cpu --batches 1 --iters 2   # the same code paths on CPU

Rows (1024×768 by default, random input; speed does not depend on pixel values):
- torch eager, fp32 and fp16 (model.half()), cudnn.benchmark on, per batch size
- ORT with the CUDA EP, fp32 model and an fp16 conversion (io types kept float32), inputs
  and outputs bound on the device (IO binding), so no host copies are timed
- service.engine.Engine.submit from many concurrent callers: the dynamic batcher as shipped (fp32)
Images/s is batch × iterations over wall time, after warm-up runs at that batch size.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT, summarise

BEGIN, END = "<!-- bench-gpu:begin -->", "<!-- bench-gpu:end -->"


def torch_rows(model_dir: Path, device: str, shape: tuple[int, int], batches: list[int], iters: int,
               dtypes: tuple[str, ...] = ("fp32", "fp16")) -> list[dict]:
    import torch

    from models.span import Span

    torch.backends.cudnn.benchmark = True
    rows = []
    for dtype in dtypes:
        if dtype == "fp16" and device == "cpu":
            continue  # half-precision convolutions on CPU are not a serving path
        model = Span.from_checkpoint(model_dir / "span.pt").eval().to(device)
        torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
        model = model.to(torch_dtype)
        for batch in batches:
            image = (torch.rand(batch, 3, *shape, device=device) * 255).to(torch_dtype)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                for _ in range(2):
                    model(image)
                latencies = []
                for _ in range(iters):
                    _sync(device)
                    started = time.perf_counter()
                    model(image)
                    _sync(device)
                    latencies.append(time.perf_counter() - started)
            row = {"path": f"torch eager {dtype}", "batch": batch, **summarise(latencies, images=batch * iters)}
            if device.startswith("cuda"):
                row["device_memory"] = torch.cuda.max_memory_allocated()
            rows.append(row)
        del model
    return rows


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def fp16_model(source: Path, target: Path) -> Path:
    """An fp16 copy of the ONNX model whose input and output stay float32 (the ONNX contract)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


def ort_rows(model_dir: Path, device: str, shape: tuple[int, int], batches: list[int], iters: int,
             dtypes: tuple[str, ...] = ("fp32", "fp16")) -> list[dict]:
    import onnxruntime as ort

    if device.startswith("cuda"):
        providers = [("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE",
                                                "arena_extend_strategy": "kSameAsRequested"}),
                     "CPUExecutionProvider"]
        ort_device = "cuda"
    else:
        providers, ort_device = ["CPUExecutionProvider"], "cpu"
    rows = []
    with tempfile.TemporaryDirectory(prefix="span-gpu-") as tmp:
        for dtype in dtypes:
            path = model_dir / "span.onnx"
            if dtype == "fp16":
                if ort_device == "cpu":
                    continue
                path = fp16_model(path, Path(tmp) / "span.fp16.onnx")
            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), options, providers=providers)
            in_use = session.get_providers()[0]
            if ort_device == "cuda" and in_use != "CUDAExecutionProvider":
                rows.append({"path": f"ORT {dtype}", "error": f"CUDA EP unavailable; ORT fell back to {in_use}"})
                continue
            for batch in batches:
                host = np.random.default_rng(0).random((batch, 3, *shape), dtype=np.float32) * 255
                binding = session.io_binding()
                binding.bind_ortvalue_input("image", ort.OrtValue.ortvalue_from_numpy(host, ort_device, 0))
                binding.bind_output("heatmap", ort_device)
                for _ in range(2):
                    session.run_with_iobinding(binding)
                latencies = []
                for _ in range(iters):
                    started = time.perf_counter()
                    session.run_with_iobinding(binding)
                    binding.synchronize_outputs()
                    latencies.append(time.perf_counter() - started)
                out = binding.get_outputs()[0]
                assert out.shape() == [batch, 1, *shape], out.shape()
                rows.append({"path": f"ORT {dtype} ({in_use}, IO binding)", "batch": batch,
                             **summarise(latencies, images=batch * iters)})
    return rows


def engine_row(model_dir: Path, device: str, shape: tuple[int, int], images: int, max_batch: int) -> dict:
    """`images` concurrent Engine.submit calls: the shipped dynamic batcher, fp32, on the configured provider."""
    from service.engine import Engine
    from service.settings import Settings

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    settings = Settings(model_dir=model_dir, providers=providers, max_batch_size=max_batch,
                        queue_size=max(images, 1), max_queue_delay_ms=5.0, warmup=False)
    engine = Engine.from_settings(settings)
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)

    async def burst() -> list[float]:
        async def one() -> float:
            started = time.perf_counter()
            await engine.submit(rgb, wait=True)
            return time.perf_counter() - started

        return await asyncio.gather(*(one() for _ in range(images)))

    asyncio.run(burst())  # warm-up: every batch size the burst produces
    started = time.perf_counter()
    latencies = asyncio.run(burst())
    wall = time.perf_counter() - started
    engine.close()
    return {"path": f"service.engine, dynamic batching ≤ {max_batch} (fp32, {engine.provider})", "batch": "dynamic",
            **summarise(latencies, wall_s=wall, images=images)}


def render(rows: list[dict], device_name: str, shape: tuple[int, int]) -> str:
    lines = [f"GPU figures: `python -m bench.gpu` on {device_name}, {shape[1]}×{shape[0]} inputs, "
             f"load {os.getloadavg()[0]:.1f}.", "",
             "| path | batch | images/s | p50 per batch | p95 per batch | device memory |", "|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['path']} | — | error: {row['error']} | | | |")
            continue
        memory = f"{row['device_memory'] / 2**30:.2f} GiB" if row.get("device_memory") else "—"
        lines.append(f"| {row['path']} | {row['batch']} | {row['images_per_s']:.1f} | {row['p50_s'] * 1000:.1f} ms "
                     f"| {row['p95_s'] * 1000:.1f} ms | {memory} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (code-path check)")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "weights")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--engine-images", type=int, default=256)
    parser.add_argument("--out", type=Path, help="Markdown file whose GPU block to rewrite")
    args = parser.parse_args(argv)
    shape = (args.height, args.width)
    device_name = args.device
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device visible to torch; use --device cpu for a code-path check")
        device_name = torch.cuda.get_device_name(0)
    rows = torch_rows(args.model_dir, args.device, shape, args.batches, args.iters)
    rows += ort_rows(args.model_dir, args.device, shape, args.batches, args.iters)
    rows.append(engine_row(args.model_dir, args.device, shape, args.engine_images, max(args.batches)))
    text = render(rows, device_name, shape)
    print(text)
    if args.out:
        from bench.bench import write_doc

        write_doc(args.out, text, markers=(BEGIN, END))
    return text


if __name__ == "__main__":
    main()
