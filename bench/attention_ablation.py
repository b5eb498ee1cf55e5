"""Attention ablation (issue 19): each block of models/attention/ in SPAN's five slots, trained
on one frozen Featex with the same data and the same number of samples, scored on the dev
benchmark and timed through ONNX Runtime. Writes a Markdown table (and the raw figures as JSON).

    nice -n 10 .venv/bin/python -m bench.attention_ablation --samples 240 --seeds 0 1 --threads 1

Phases (--phase): ``train`` (train the seeds and keep their weights in --workdir, nothing
scored; seeds may train as separate processes, one per core), ``accuracy`` (train what is
not kept yet, then score on the dev benchmark) and ``cost`` (export
and time) write their figures to <out>.accuracy.json and <out>.cost.json; ``table`` writes
<out> from whichever of the two exist; ``all`` (default) runs the three in turn. The two
measuring phases are independent and may run as two processes.

Training (stage 2 of models/train.py, its pieces: ForgeryDataset, localisation_loss, lr_at,
AdamW, gradient clipping, settings of models/configs/cpu-small.json): Featex comes from
--base and stays frozen (fp32, no gradients); everything after it (outlier transform, the
five attention slots, feed-forwards, head) starts fresh. Per seed, every block sees the
same synthetic stream (ForgeryDataset seed = seed + 1, as train_stage2), the same number of
samples, and the same initial outlier/feed-forward/head weights (those of the seed's
'pixel' model); only the attention blocks' own initialisation differs. The budget is
counted in samples, not minutes, because the machine is shared. All blocks of a seed train
side by side on each batch, so Featex and the synthesis run once per batch. Precision: fp32.
The weights scored are the last ones (no validation-based selection). --grid trains and
scores on a smaller working grid than the base's (fewer positions for every block; the
cost phase always measures the base's own architecture).

Scoring: dev pixel AUC per forged image (rows with a mask of the --manifest), averaged
overall and per dataset, of the full-size heatmap as the network makes it (sigmoid on the
grid, resized to the image). Images above --max-pixels (0.5 MP) are resized down (Lanczos,
masks nearest) before scoring, which weakens resampling-sensitive traces; the table says so.

Cost: parameters (the five attention blocks, and everything trained), ms for one 1024x768
image through ONNX Runtime on this CPU (--threads intra-op threads, median of --repeats runs
after a warm-up; the machine's load average is printed with it), ORT parity at that size,
and whether the ONNX export is clean: no op outside the standard domain, and no warning from
the exporter besides its own notice that the TorchScript exporter is deprecated (the
product's export_onnx hides a TracerWarning about the fixed grid and a constant-folding
notice; here they are counted, for the pixel baseline too).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models import synthesis
from models.attention import ATTENTION_BLOCKS
from models.export import export_onnx, onnx_parity
from models.layers import tf1_bilinear_resize
from models.losses import localisation_loss
from models.span import Span, SpanConfig
from models.train import lr_at
from models.train_config import Stage2Settings, TrainConfig
from service.decode import decode_image
from service.evaluation.benchmark import read_benchmark, read_mask
from service.settings import Settings
from spancore.cues import compute_cues
from spancore.scoring import roc_auc

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# A from-scratch stage 2 (fresh heads, so cpu-small's lr 1e-3) at the shipped run's batch and patch.
SETTINGS = Stage2Settings(batch_size=4, patch=256, lr=1e-3, warmup_steps=10, min_lr_ratio=0.05, weight_decay=1e-4,
                          grad_clip=1.0, dice_weight=0.5)
TRAINED_PARTS = ("outlier", "cue_transform", "feed_forward", "head")  # shared initialisation across blocks
# The synthetic stream (kinds and recipe) of the run that made the shipped weights.
STREAM_CONFIG = REPO_ROOT / "models" / "configs" / "cues-long.json"


def load_base(path: Path) -> tuple[SpanConfig, dict[str, torch.Tensor]]:
    """The architecture and the Featex weights of a ``Span.checkpoint()`` file (nothing else)."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    config = SpanConfig.from_dict(data["config"])
    featex = {k[len("featex."):]: v for k, v in data["state_dict"].items() if k.startswith("featex.")}
    return config, featex


def build_models(config: SpanConfig, featex: dict, names: list[str], seed: int) -> dict[str, Span]:
    torch.manual_seed(seed)
    reference = Span(SpanConfig.from_dict({**config.to_dict(), "attention": "pixel"}))
    shared = {k: v for k, v in reference.state_dict().items() if k.split(".")[0] in TRAINED_PARTS}
    models = {}
    for name in names:
        torch.manual_seed(seed)
        model = Span(SpanConfig.from_dict({**config.to_dict(), "attention": name}))
        model.featex.load_state_dict(featex)
        model.load_state_dict(shared, strict=False)
        model.freeze_featex()
        models[name] = model
    return models


def train_seed(models: dict[str, Span], featex: torch.nn.Module, seed: int, samples: int,
               data_dir: Path | None) -> dict[str, float]:
    """Train every model on the same stream; returns each block's training CPU seconds per sample."""
    s = SETTINGS
    steps = samples // s.batch_size
    stream = TrainConfig.load(STREAM_CONFIG).stage2
    uses_cues = next(iter(models.values())).config.cue_channels > 0
    dataset = synthesis.ForgeryDataset("train", size=s.patch, length=steps * s.batch_size, seed=seed + 1,
                                       data_dir=data_dir, kind_weights=stream.kind_weights,
                                       recipe=synthesis.Recipe(**(stream.recipe or {})), cues=uses_cues)
    loader = torch.utils.data.DataLoader(dataset, batch_size=s.batch_size, sampler=range(steps * s.batch_size),
                                         num_workers=1, persistent_workers=False)
    optimisers = {name: torch.optim.AdamW(m.trainable_parameters(), lr=s.lr, weight_decay=s.weight_decay)
                  for name, m in models.items()}
    seconds: dict[str, float] = defaultdict(float)
    started = time.monotonic()
    for step, batch in enumerate(loader, 1):
        image, cues, mask = (batch[0], batch[1], batch[2]) if uses_cues else (batch[0], None, batch[1])
        with torch.no_grad():
            features = featex(image)
        lr = lr_at(step, step / steps, s)
        losses = {}
        for name, model in models.items():
            tick = time.process_time()
            model.train()
            optimiser = optimisers[name]
            for group in optimiser.param_groups:
                group["lr"] = lr
            loss, _ = localisation_loss(model.logits_from_features(features, cues), mask, s.dice_weight)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}, seed {seed}, step {step}: loss {loss.item()}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), s.grad_clip)
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            seconds[name] += time.process_time() - tick
            losses[name] = round(loss.item(), 3)
        if step % 10 == 0 or step == steps:
            print(f"seed {seed} step {step}/{steps} ({time.monotonic() - started:.0f} s) loss {losses}", flush=True)
    return {name: t / (steps * s.batch_size) for name, t in seconds.items()}


def dev_images(manifest: Path, max_pixels: int):
    """(dataset, image 1x3xHxW 0..255, cues 1xCxH/8xW/8, truth HxW bool) for each forged row, as the
    engine's ``resize`` policy feeds the network: the photo down-sized to max_pixels (bilinear, as
    Engine.plan), the cues from the photo as given; the truth resized (nearest) to the network's size."""
    for row in read_benchmark(manifest):
        if row.mask is None:
            continue
        rgb = decode_image(row.image.read_bytes(), max_pixels=10**9).rgb
        truth = read_mask(row.mask, (rgb.shape[1], rgb.shape[0]))
        cues = torch.from_numpy(compute_cues(rgb))[None]
        h, w = truth.shape
        if h * w > max_pixels:
            scale = (max_pixels / (h * w)) ** 0.5
            size = (max(1, int(w * scale)), max(1, int(h * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
            truth = np.asarray(Image.fromarray(truth).resize(size, Image.NEAREST))
        if not 0 < truth.sum() < truth.size:
            continue
        image = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        yield row.dataset, image, cues, truth


@torch.no_grad()
def score_dev(models: dict[tuple[str, int], Span], featex: torch.nn.Module, manifest: Path, max_pixels: int,
              limit: int | None = None) -> dict[tuple[str, int], dict[str, list[float]]]:
    """Per model: pixel AUC of each forged image, grouped by dataset. Featex runs once per image."""
    scores: dict[tuple[str, int], dict[str, list[float]]] = {key: defaultdict(list) for key in models}
    for model in models.values():
        model.eval()
    for count, (dataset, image, cues, truth) in enumerate(dev_images(manifest, max_pixels), 1):
        features = featex(image)
        for key, model in models.items():
            logits = model.logits_from_features(features, cues if model.config.cue_channels else None)
            heat = tf1_bilinear_resize(torch.sigmoid(logits), tuple(image.shape[-2:]))
            auc = roc_auc(heat[0, 0].numpy(), truth)
            if auc is not None:
                scores[key][dataset].append(auc)
        print(f"dev image {count} ({dataset}, {image.shape[-1]}x{image.shape[-2]}) scored", flush=True)
        if count == limit:
            break
    return scores


def export_checked(model: Span, path: Path) -> list[str]:
    """Export as export_onnx does (TorchScript exporter, opset 17, dynamic batch/height/width) but
    without its warning filters; returns the warnings (besides the exporter's own deprecation
    notices) and any op outside the standard ONNX domain (an ATen fallback or custom op)."""
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    example: tuple[torch.Tensor, ...] = (torch.rand(1, 3, 64, 48) * 255,)
    inputs, dynamic = ["image"], {"image": axes, "heatmap": axes}
    if model.config.cue_channels:  # as export_onnx: the cues are the second input
        example += (torch.randn(1, model.config.cue_channels, 8, 6),)
        inputs.append("cues")
        dynamic["cues"] = {0: "batch", 2: "block_rows", 3: "block_columns"}
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(model.eval(), example, str(path), dynamo=False, opset_version=17,
                          input_names=inputs, output_names=["heatmap"], dynamic_axes=dynamic, do_constant_folding=True)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:70]}" for w in caught
                    if not issubclass(w.category, DeprecationWarning)})
    domains = {node.domain or "ai.onnx" for node in onnx.load(str(path)).graph.node}
    return notes + [f"ops in domain {d}" for d in sorted(domains - {"ai.onnx"})]


def onnx_cost(model: Span, workdir: Path, threads: int, repeats: int) -> dict:
    """Wall and process-CPU milliseconds of one 1024x768 image through ONNX Runtime, parity with
    torch at a small size, and the export's warnings. On a shared machine the wall time includes
    waiting for other processes; CPU ms / threads estimates the wall time on an idle one."""
    import onnxruntime as ort

    path = workdir / "model.onnx"
    notes = export_checked(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"image": (torch.rand(1, 3, 768, 1024, generator=torch.Generator().manual_seed(0)) * 255).numpy()}
    if model.config.cue_channels:  # computed outside the graph (spancore.cues), the same for every block
        feed["cues"] = compute_cues(feed["image"][0].transpose(1, 2, 0).astype(np.uint8))[None]
    session.run(None, feed)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        session.run(None, feed)
        walls.append(1000 * (time.perf_counter() - wall))
        cpus.append(1000 * (time.process_time() - cpu))
    parity = onnx_parity(model, path, [(1, 96, 128)], tolerance=1.0)  # measured here, judged in the table
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus), "parity": parity, "notes": notes}


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def summarise(per_dataset: dict[str, list[float]]) -> dict:
    every = [a for values in per_dataset.values() for a in values]
    return {"mean": statistics.mean(every) if every else None,
            "by_dataset": {d: statistics.mean(v) for d, v in sorted(per_dataset.items())}, "n": len(every)}


def parameter_counts(model: Span) -> dict[str, int]:
    return {"attention": sum(p.numel() for p in model.attention.parameters()),
            "trained": sum(p.numel() for p in model.trainable_parameters())}


def shown(path: Path) -> str:
    """A path as the docs print it: relative to the checkout (../shared/... for the shared data)."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)


def run_accuracy(args, config: SpanConfig, featex_state: dict) -> dict:
    started = time.monotonic()
    if args.grid:
        config = SpanConfig.from_dict({**config.to_dict(), "grid": (args.grid, args.grid)})
    featex_model = Span(config).featex
    featex_model.load_state_dict(featex_state)
    featex_model.eval().requires_grad_(False)
    data_dir = SHARED if SHARED.is_dir() else None
    trained: dict[tuple[str, int], Span] = {}
    train_seconds: dict[str, list[float]] = defaultdict(list)
    for seed in args.seeds:
        models = build_models(config, featex_state, args.blocks, seed)
        # Trained weights are kept per seed, so an interrupted run scores without training again.
        saved = args.workdir / f"{args.base.stem}-grid{config.grid[0]}-samples{args.samples}-seed{seed}.pt"
        done = torch.load(saved, weights_only=False) if saved.exists() else {}
        if set(args.blocks) <= set(done.get("models", {})):
            for name, model in models.items():
                model.load_state_dict(done["models"][name])
                train_seconds[name].append(done["seconds"][name])
            print(f"seed {seed}: trained weights from {saved}", flush=True)
        else:
            seconds = train_seed(models, featex_model, seed, args.samples, data_dir)
            for name in models:
                train_seconds[name].append(seconds[name])
            saved.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"models": {n: m.state_dict() for n, m in models.items()}, "seconds": seconds}, saved)
        trained.update({(name, seed): model for name, model in models.items()})
        print(f"seed {seed} trained ({(time.monotonic() - started) / 60:.1f} min)", flush=True)
    if args.phase == "train":
        return {}
    scores = score_dev(trained, featex_model, args.manifest, args.max_pixels, args.dev_limit)
    return {
        "base": shown(args.base), "architecture": config.name, "grid": list(config.grid), "samples": args.samples,
        "seeds": args.seeds, "manifest": shown(args.manifest), "max_pixels": args.max_pixels, "names": args.blocks,
        "scores": {name: {str(seed): summarise(scores[(name, seed)]) for seed in args.seeds} for name in args.blocks},
        "params": {name: parameter_counts(trained[(name, args.seeds[0])]) for name in args.blocks},
        "train_cpu_seconds_per_sample": dict(train_seconds),
        "load_average_end": os.getloadavg()[0], "minutes": (time.monotonic() - started) / 60,
    }


def run_cost(args, config: SpanConfig) -> dict:
    started = time.monotonic()
    cost = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.blocks:
            torch.manual_seed(0)
            model = Span(SpanConfig.from_dict({**config.to_dict(), "attention": name})).eval()
            model.freeze_featex()  # 'trained' parameters: what stage 2 trains
            cost[name] = {**onnx_cost(model, Path(tmp), args.threads, args.repeats), **parameter_counts(model)}
            print(f"{name}: {cost[name]}", flush=True)
    return {"architecture": config.name, "grid": list(config.grid), "threads": args.threads, "repeats": args.repeats,
            "blocks": cost, "load_average_end": os.getloadavg()[0], "minutes": (time.monotonic() - started) / 60}


def write_markdown(accuracy: dict | None, cost: dict | None, out: Path, reading: list[str]) -> None:
    names = (accuracy or cost or {}).get("names") or list((cost or {}).get("blocks", {}))
    scores = (accuracy or {}).get("scores", {})
    datasets = sorted({d for per_seed in scores.values() for v in per_seed.values() for d in v["by_dataset"]})
    blocks = (cost or {}).get("blocks", {})
    pixel_cpu = blocks.get("pixel", {}).get("cpu_ms")
    pixel_notes = blocks.get("pixel", {}).get("notes", [])
    lines = ["# Attention blocks in SPAN's slots: an equal-budget ablation", "",
             "Generated by `bench/attention_ablation.py` (issue 19; its docstring says exactly what is trained and",
             "measured). Blocks: `models/attention/` (each file's docstring: the paper, and what the block does with a",
             "slot's dilation).", ""]
    if accuracy:
        a = accuracy
        lines += [
            "Accuracy command:", "",
            f"    nice -n 10 .venv/bin/python -m bench.attention_ablation --phase accuracy --base {a['base']} "
            f"--samples {a['samples']} --seeds {' '.join(map(str, a['seeds']))} --max-pixels {a['max_pixels']}"
            + (f" --grid {a['grid'][0]}" if a.get("grid_reduced") else ""), "",
            f"- Frozen Featex from `{a['base']}` ({a['architecture']} layout); everything after it trained from scratch"
            f" for **{a['samples']} samples** per block and seed ({a['samples'] // SETTINGS.batch_size} steps of"
            f" {SETTINGS.batch_size} {SETTINGS.patch}-px patches, lr {SETTINGS.lr:g}; cpu-small's stage-2 settings),"
            f" seeds {', '.join(map(str, a['seeds']))}, working grid {a['grid'][0]}×{a['grid'][1]}; the same synthetic"
            " stream and the same non-attention initial weights for every block of a seed.",
            f"- Dev pixel AUC: per-image AUC averaged over the forged images of `{a['manifest']}`; images above"
            f" {a['max_pixels'] / 1e6:.2f} MP were resized down (Lanczos; masks nearest) before scoring, which weakens"
            " the resampling traces SPAN looks for. Cells: mean over seeds (lowest-highest seed).",
            f"- Training CPU s/sample: process CPU time of forward + backward + step of the trained part (fp32, torch).",
            f"- This phase took {a['minutes']:.0f} min of wall time (scoring, and the training of any seed whose"
            f" weights a `--phase train` run had not kept); load average at the end {a['load_average_end']:.1f}.", ""]
    if cost:
        c = cost
        lines += [
            "Cost command:", "",
            f"    .venv/bin/python -m bench.attention_ablation --phase cost --threads {c['threads']}"
            f" --repeats {c['repeats']}", "",
            f"- The {c['architecture']} layout with each block in its five slots (working grid {c['grid'][0]}×"
            f"{c['grid'][1]}, as shipped), untrained weights (the cost does not depend on them). One 1024×768 image"
            f" through ONNX Runtime's CPU provider, {c['threads']} threads, median of {c['repeats']} runs after a"
            " warm-up. CPU ms is the process CPU time of a run (/ threads ≈ the wall time on an idle machine); wall ms"
            f" on this shared machine (load average {c['load_average_end']:.1f} at the end) is inflated by waiting.",
            "- Export: the TorchScript exporter (opset 17, dynamic batch/height/width) without the product's warning"
            " filters; 'clean' = no op outside the standard domain and no warning but the exporter's own deprecation"
            " notice; 'as pixel' = only the notices the shipped pixel model's export has too"
            + (f" ({'; '.join(pixel_notes)}: export_onnx filters both, the first is the fixed working grid)"
               if pixel_notes else "") + ". Parity: max |ORT - torch| of the heatmap at 128×96.", ""]
    header = ["block", "dev pixel AUC", *datasets, "params (attention / trained)", "ORT CPU ms 1024×768 (× pixel)",
              "ORT wall ms", "parity", "export", "train CPU s/sample"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        per_seed = scores.get(name, {})
        cells = [spread([v["mean"] for v in per_seed.values() if v["mean"] is not None])]
        cells += [spread([v["by_dataset"][d] for v in per_seed.values() if d in v["by_dataset"]]) for d in datasets]
        b = blocks.get(name)
        params = b or (accuracy or {}).get("params", {}).get(name)
        cells.append(f"{params['attention']:,} / {params['trained']:,}" if params else "n/a")
        if b:
            ratio = f" ({b['cpu_ms'] / pixel_cpu:.2f}×)" if pixel_cpu else ""
            extra = [n for n in b["notes"] if n not in pixel_notes]
            export = "clean" if not b["notes"] else ("as pixel" if not extra else "; ".join(extra))
            cells += [f"{b['cpu_ms']:.0f}{ratio}", f"{b['wall_ms']:.0f}", f"{b['parity']:.1e}", export]
        else:
            cells += ["not run"] * 4
        train = (accuracy or {}).get("train_cpu_seconds_per_sample", {}).get(name)
        cells.append(f"{statistics.mean(train):.1f}" if train else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Reading", "", *(reading or ["(no reading written)"]), ""]
    out.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["all", "train", "accuracy", "cost", "table"], default="all")
    parser.add_argument("--base", type=Path, default=REPO_ROOT / "weights" / "span.pt")
    parser.add_argument("--blocks", nargs="+", default=sorted(ATTENTION_BLOCKS, key=lambda n: (n != "pixel", n)),
                        choices=sorted(ATTENTION_BLOCKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--samples", type=int, default=160, help="training samples per block and seed")
    parser.add_argument("--grid", type=int, default=None, help="train and score on a G x G working grid")
    parser.add_argument("--manifest", type=Path, default=SHARED / "benchmarks" / "dev" / "manifest.csv")
    parser.add_argument("--max-pixels", type=int, default=Settings().max_working_pixels,
                        help="photos above this are resized down before scoring (the engine's resize policy)")
    parser.add_argument("--dev-limit", type=int, default=None, help="score only the first N forged images (a probe)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "attention-ablation.md")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "runs" / "attention-ablation",
                        help="trained weights per seed (reused by a rerun with the same base, grid and samples)")
    parser.add_argument("--reading", type=Path, default=None, help="Markdown lines for the table's 'Reading' section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    accuracy_json, cost_json = args.out.with_suffix(".accuracy.json"), args.out.with_suffix(".cost.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config, featex_state = load_base(args.base)
    if args.phase == "train":
        run_accuracy(args, config, featex_state)
        return
    if args.phase in ("all", "accuracy"):
        accuracy = run_accuracy(args, config, featex_state)
        accuracy["grid_reduced"] = bool(args.grid)
        accuracy_json.write_text(json.dumps(accuracy, indent=1) + "\n")
    if args.phase in ("all", "cost"):
        cost_json.write_text(json.dumps(run_cost(args, config), indent=1) + "\n")
    accuracy = json.loads(accuracy_json.read_text()) if accuracy_json.exists() else None
    cost = json.loads(cost_json.read_text()) if cost_json.exists() else None
    reading = args.reading.read_text().splitlines() if args.reading else []
    write_markdown(accuracy, cost, args.out, reading)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
