"""Measurements that run inside a fresh child process (see common.run_child), one row each.

    python -m bench.workloads '{"kind": "engine", "image": "/tmp/x.jpg", "repeats": 5}'

kinds:
- engine:  service.engine.Engine.predict on a decoded photo: what `span serve` runs per image
- torch:   the same weights (weights/span.pt) in torch eager, on exactly the engine's inputs
           (same large-image plan, same map assembly), so the two rows differ only in the runtime
- ort:     a bare ONNX Runtime session with chosen session options on chosen input shapes (levers)
- profile: multiply-adds per input shape (from the model config), and where ORT's time goes
- matmul:  the machine's practical fp32 peak, from a large numpy matmul
"""
from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.common import REPO_ROOT, child_main, own_rss, summarise, timed_loop

MODEL = REPO_ROOT / "weights" / "span.onnx"


def _decoded(path: str, max_pixels: int) -> np.ndarray:
    from service.decode import decode_image

    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels).rgb


def _settings(overrides: dict):
    from service.settings import Settings

    return Settings(**{"providers": ["CPUExecutionProvider"], "warmup": False, **overrides})


# ---------------------------------------------------------------------------- engine and torch rows
def engine_row(task: dict) -> dict:
    from service.engine import Engine

    settings = _settings(task.get("settings", {}))
    rgb = _decoded(task["image"], settings.max_pixels)
    started = time.perf_counter()
    engine = Engine.from_settings(settings)
    create_s = time.perf_counter() - started
    rss_loaded = own_rss()
    inputs = engine.plan(rgb).inputs["image"].shape
    engine.predict(rgb)  # warm-up: ORT plans memory for this shape on the first run
    latencies = timed_loop(lambda: engine.predict(rgb), task["repeats"], task.get("max_seconds", 60),
                           min_repeats=task.get("min_repeats", 3))
    engine.close()
    return {**summarise(latencies), "network_input": list(inputs), "rss_loaded": rss_loaded,
            "create_s": create_s, "threads": settings.intra_op_threads or "ORT default",
            "precision": engine.manifest.precision}


def torch_row(task: dict) -> dict:
    import torch

    from models.span import Span
    from service.engine import Engine

    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    settings = _settings(task.get("settings", {}))
    rgb = _decoded(task["image"], settings.max_pixels)
    model = Span.from_checkpoint(Path(settings.model_dir) / "span.pt").eval()
    rss_loaded = own_rss()
    # The engine's own large-image plan and map assembly need only its settings, so the torch
    # row feeds the network exactly what the ORT row does.
    policy = SimpleNamespace(settings=settings, takes_cues=model.config.cue_channels > 0)
    step = settings.max_batch_size

    def predict() -> np.ndarray:
        plan = Engine.plan(policy, rgb)
        images, cues = plan.inputs["image"], plan.inputs.get("cues")
        with torch.inference_mode():
            maps = [model(torch.from_numpy(images[i : i + step]),
                          None if cues is None else torch.from_numpy(cues[i : i + step])).numpy()[:, 0]
                    for i in range(0, images.shape[0], step)]
        return Engine.assemble(policy, plan, np.clip(np.concatenate(maps), 0.0, 1.0))

    inputs = Engine.plan(policy, rgb).inputs["image"].shape
    predict()
    latencies = timed_loop(predict, task["repeats"], task.get("max_seconds", 60))
    return {**summarise(latencies), "network_input": list(inputs), "rss_loaded": rss_loaded,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


# ---------------------------------------------------------------------------- bare ORT sessions (levers)
LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


def session_options(options: dict):
    """SessionOptions from a plain dict (JSON-able, so a lever is one line of bench/levers.py)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[options.get("level", "all")])
    so.intra_op_num_threads = options.get("intra", 0)
    so.inter_op_num_threads = options.get("inter", 1)
    if options.get("parallel"):
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if "spinning" in options:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options["spinning"] else "0")
    so.enable_cpu_mem_arena = options.get("arena", True)
    so.enable_mem_pattern = options.get("mem_pattern", True)
    if options.get("save_optimized"):
        so.optimized_model_filepath = options["save_optimized"]
    if options.get("profile"):
        so.enable_profiling = True
        so.profile_file_prefix = options["profile"]
    so.log_severity_level = 3
    return so


def ort_row(task: dict) -> dict:
    import onnxruntime as ort

    options = task.get("options", {})
    started = time.perf_counter()
    session = ort.InferenceSession(task.get("model", str(MODEL)), session_options(options),
                                   providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    shapes = {}
    takes_cues = "cues" in {i.name for i in session.get_inputs()}
    for height, width in task["shapes"]:
        image = (rng.random((task.get("batch", 1), 3, height, width), dtype=np.float32) * 255)
        feeds = {"image": image}
        if takes_cues:  # the service computes them (spancore.cues); here only their shape matters
            feeds["cues"] = rng.standard_normal((image.shape[0], 8, -(-height // 8), -(-width // 8))).astype(np.float32)
        first = time.perf_counter()
        session.run(None, feeds)
        first_s = time.perf_counter() - first
        latencies = timed_loop(lambda: session.run(None, feeds), task["repeats"],
                               task.get("max_seconds", 60), min_repeats=task.get("min_repeats", 3))
        shapes[f"{height}x{width}"] = {**summarise(latencies), "first_s": first_s}
    return {"create_s": create_s, "shapes": shapes}


# ---------------------------------------------------------------------------- FLOPs and time breakdown
def _node_events(profile_path: str) -> list[dict]:
    events = json.loads(Path(profile_path).read_text())
    return [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]


def model_macs(architecture: dict, shapes: list[list[int]]) -> dict[str, int]:
    """Multiply-adds per input shape, counted from a SpanConfig dict (bench/featex_variants.py:
    convolutions and the attention products, cross-checked there against torch's FlopCounterMode)."""
    from bench.featex_variants import featex_macs, grid_macs
    from models.span import SpanConfig

    config = SpanConfig.from_dict(architecture)
    return {f"{h}x{w}": featex_macs(config, h, w) + grid_macs(config) for h, w in shapes}


PARTS = {"featex": "Featex", "outlier": "outlier transform", "attention": "pixel attention (5 blocks)",
         "feed_forward": "attention feed-forward (5 blocks)", "head": "head"}


def network_part(event_name: str) -> str:
    """Which part of Span a profiled node belongs to, from its exported name ('/featex/...')."""
    name = event_name.removesuffix("_kernel_time")
    if name.startswith("/") and name.count("/") > 1:
        module = name.split("/")[1].split(".")[0]
        return PARTS.get(module, module)
    if name.startswith("Reorder"):
        return "layout reorders (NCHWc)"
    return "resizes to and from the grid"


def profile_row(task: dict) -> dict:
    """Multiply-adds per input shape, and the time per operator type of the shipped session options
    (all optimisations) from ORT's profiler, one run after the warm-up run."""
    import tempfile

    import onnxruntime as ort

    model = task.get("model", str(MODEL))
    architecture = task.get("architecture") or json.loads(
        (Path(model).parent / "manifest.json").read_text())["architecture"]
    result = {"macs": model_macs(architecture, task["shapes"])}
    if task.get("breakdown_shape"):
        height, width = task["breakdown_shape"]
        with tempfile.TemporaryDirectory(prefix="span-profile-") as tmp:
            session = ort.InferenceSession(model, session_options({"level": "all", "profile": f"{tmp}/time"}),
                                           providers=["CPUExecutionProvider"])
            image = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32) * 255
            session.run(None, {"image": image})
            session.run(None, {"image": image})
            events = _node_events(session.end_profiling())
        by_op: dict[str, float] = defaultdict(float)
        by_part: dict[str, float] = defaultdict(float)
        for event in events[len(events) // 2 :]:  # each node appears once per run: keep the second run
            by_op[event["args"]["op_name"]] += event["dur"] / 1e6
            by_part[network_part(event["name"])] += event["dur"] / 1e6
        result["breakdown_s"] = dict(by_op)
        result["parts_s"] = dict(by_part)
    return result


def matmul_row(task: dict) -> dict:
    """Best of `repeats` fp32 n x n matmuls (numpy's BLAS, all its threads): the practical peak."""
    n = task.get("n", 4096)
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = min(timed_loop(lambda: a @ b, task.get("repeats", 5), 30))
    return {"n": n, "best_s": best, "gflops": 2 * n**3 / best / 1e9, "blas_threads": _blas_threads()}


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i['internal_api']}×{i['num_threads']}" for i in threadpool_info())
    except ImportError:
        return os.environ.get("OMP_NUM_THREADS", "BLAS default")


HANDLERS = {"engine": engine_row, "torch": torch_row, "ort": ort_row, "profile": profile_row, "matmul": matmul_row}

if __name__ == "__main__":
    child_main(HANDLERS)
