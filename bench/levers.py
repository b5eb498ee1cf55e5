"""Levers toward the CPU targets, each measured in a fresh process on the same input.

- ONNX Runtime session options: graph optimisation level, intra/inter-op threads, execution
  mode, thread spinning, memory arena and memory patterns.
- The optimised graph saved to disk (SessionOptions.optimized_model_filepath) and loaded back.
- Variable input shapes: what the arena and memory patterns cost in peak RSS.
- The large-image policy: working pixels of the 'resize' policy, and the 'tile' policy.
- The Featex preset (pooled vs slim), exported untrained: speed does not depend on weight values.

Each lever returns a table {title, note, columns, rows} that bench.render prints.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.common import SIZES, error_cells, fmt_bytes as _fmt_rss, fmt_seconds as _fmt_s, run_child


def _ort(model: Path, options: dict, shapes: list, repeats: int, **extra) -> dict:
    return run_child("bench.workloads", {"kind": "ort", "model": str(model), "options": options,
                                         "shapes": shapes, "repeats": repeats, **extra})


SESSION_VARIANTS: list[tuple[str, dict]] = [
    ("shipped: all optimisations, intra-op = cores, inter-op 1, sequential", {}),
    ("graph optimisation: disabled", {"level": "disable"}),
    ("graph optimisation: basic", {"level": "basic"}),
    ("graph optimisation: extended", {"level": "extended"}),
    ("intra-op threads 1", {"intra": 1}),
    ("parallel execution mode, inter-op 2", {"parallel": True, "inter": 2}),
    ("thread spinning off", {"spinning": False}),
    ("CPU memory arena off", {"arena": False}),
    ("memory patterns off", {"mem_pattern": False}),
]


def session_options_table(model: Path, shape: list[int], repeats: int, progress) -> dict:
    columns = ["variant", "session start", "first run", "p50", "p95", "peak RSS", "load"]
    rows = []
    key = f"{shape[0]}x{shape[1]}"
    for name, options in SESSION_VARIANTS:
        result = _ort(model, options, [shape], repeats)
        if "error" in result:
            rows.append([name, *error_cells(result, len(columns) - 1)])
            continue
        r = result["shapes"][key]
        rows.append([name, _fmt_s(result["create_s"]), _fmt_s(r["first_s"]), _fmt_s(r["p50_s"]), _fmt_s(r["p95_s"]),
                     _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
        progress(f"lever session options / {name}: p50 {_fmt_s(r['p50_s'])}")
    return {"title": f"ONNX Runtime session options (bare session, input {shape[1]}×{shape[0]})",
            "note": "One variant per process, the rest as shipped. `first run` includes ORT's planning for a new shape.",
            "columns": columns, "rows": rows}


def cached_graph_table(model: Path, shape: list[int], repeats: int, progress) -> dict:
    columns = ["variant", "session start", "first run", "p50", "peak RSS", "load"]
    rows = []
    key = f"{shape[0]}x{shape[1]}"
    with tempfile.TemporaryDirectory(prefix="span-ortcache-") as tmp:
        cached = str(Path(tmp) / "span.optimized.onnx")
        runs = [
            ("optimise at start (shipped)", model, {}),
            ("optimise at start and save the optimised graph", model, {"save_optimized": cached}),
            ("load the saved graph, optimisation disabled", Path(cached), {"level": "disable"}),
        ]
        for name, path, options in runs:
            result = _ort(path, options, [shape], repeats)
            if "error" in result:
                rows.append([name, *error_cells(result, len(columns) - 1)])
                continue
            r = result["shapes"][key]
            rows.append([name, _fmt_s(result["create_s"]), _fmt_s(r["first_s"]), _fmt_s(r["p50_s"]),
                         _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
            progress(f"lever cached graph / {name}: start {_fmt_s(result['create_s'])}")
    return {"title": "the optimised graph saved to disk",
            "note": "An ORT_ENABLE_ALL graph holds CPU-specific layouts (NCHWc), so a cache is only valid "
                    "for the same onnxruntime version, CPU and model file.",
            "columns": columns, "rows": rows}


VARIABLE_SHAPES = [[512, 512], [768, 1024], [1024, 768], [600, 800], [1024, 1024], [512, 512]]


def variable_shapes_table(model: Path, progress, shapes: list[list[int]] = VARIABLE_SHAPES) -> dict:
    columns = ["variant", "total time (one run per shape)", "peak RSS", "load"]
    rows = []
    variants = [("arena on, memory patterns on (shipped)", {}), ("arena on, memory patterns off", {"mem_pattern": False}),
                ("arena off, memory patterns on", {"arena": False}), ("arena off, memory patterns off",
                                                                     {"arena": False, "mem_pattern": False})]
    for name, options in variants:
        result = _ort(model, options, shapes, 1, min_repeats=1, max_seconds=0)
        if "error" in result:
            rows.append([name, *error_cells(result, len(columns) - 1)])
            continue
        total = sum(r["first_s"] + r["mean_s"] for r in result["shapes"].values())
        rows.append([name, _fmt_s(total), _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
        progress(f"lever variable shapes / {name}: peak {_fmt_rss(result['peak_rss'])}")
    listed = ", ".join(f"{w}×{h}" for h, w in shapes)
    return {"title": "memory arena and patterns with variable input shapes",
            "note": f"Shapes in turn: {listed}; each run twice (first run + one more).",
            "columns": columns, "rows": rows}


def policy_table(photos: dict[str, Path], model_dir: Path, repeats: int, progress) -> dict:
    columns = ["photo", "policy", "network input", "p50", "p95", "peak RSS", "load"]
    rows = []
    cases = []
    if "1024x768" in photos:
        for pixels in (1024 * 1024, 512 * 512 * 2, 512 * 512):
            cases.append(("1024x768", f"resize, max_working_pixels {pixels / 1e6:.2f} M",
                          {"max_working_pixels": pixels}))
    if "12mp" in photos:
        for pixels in (1024 * 1024, 512 * 512 * 2, 512 * 512):
            cases.append(("12mp", f"resize, max_working_pixels {pixels / 1e6:.2f} M", {"max_working_pixels": pixels}))
        cases.append(("12mp", "tile 1024, overlap 128 (native resolution)", {"large_image_policy": "tile"}))
    for key, name, overrides in cases:
        tiled = overrides.get("large_image_policy") == "tile"  # tens of seconds a run: time one run
        result = run_child("bench.workloads", {"kind": "engine", "image": str(photos[key]),
                                               "repeats": 1 if tiled else repeats, "min_repeats": 1 if tiled else 3,
                                               "max_seconds": 30, "settings": {"model_dir": str(model_dir), **overrides}})
        if "error" in result:
            rows.append([key, *error_cells(result, len(columns) - 1)])
            continue
        net = result["network_input"]
        rows.append([key, name, f"{net[3]}×{net[2]}" + (f" ×{net[0]}" if net[0] > 1 else ""), _fmt_s(result["p50_s"]),
                     _fmt_s(result["p95_s"]), _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
        progress(f"lever policy / {key} {name}: p50 {_fmt_s(result['p50_s'])}")
    return {"title": "large-image policy (service.engine, SPAN_LARGE_IMAGE_POLICY / SPAN_MAX_WORKING_PIXELS)",
            "note": "Fewer working pixels is faster but coarser: forensic traces are high-frequency and "
                    "downscaling weakens them, so this trades detection quality for speed (to be judged "
                    "with a trained model on the dev benchmark).",
            "columns": columns, "rows": rows}


SERVER_VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("shipped (ORT thread spinning off)", {}),
    ("ORT thread spinning on (SPAN_INTRA_OP_SPINNING=true)", {"SPAN_INTRA_OP_SPINNING": "true"}),
    ("one intra-op thread (SPAN_INTRA_OP_THREADS=1)", {"SPAN_INTRA_OP_THREADS": "1"}),
]


def server_threads_table(photos: dict[str, Path], model_dir: Path, requests: int, progress) -> dict:
    """The HTTP service with 1 and 4 clients under thread settings: inference shares the cores with
    decoding, PNG encoding and the event loop, which a spinning ORT thread pool takes time from."""
    from bench.http_load import http_rows

    key = "1024x768" if "1024x768" in photos else next(iter(photos))
    columns = ["variant", "clients", "images/s", "p50", "p95", "server peak RSS", "load"]
    rows = []
    from service.settings import Settings

    for name, env in SERVER_VARIANTS:
        unknown = [v for v in env if v.removeprefix("SPAN_").lower() not in Settings.model_fields]
        if unknown:  # the settings class ignores unknown variables: this row would measure "shipped"
            rows.append([name, *error_cells({"error": f"{unknown} is not a setting of this checkout"}, len(columns) - 1)])
            continue
        try:
            result = http_rows({key: photos[key]}, [1, 4], requests,
                               {"SPAN_MODEL_DIR": str(model_dir), "SPAN_PROVIDERS": '["CPUExecutionProvider"]', **env},
                               progress=lambda line: None)[key]
        except RuntimeError as exc:  # e.g. a setting this checkout does not know
            rows.append([name, *error_cells({"error": str(exc)}, len(columns) - 1)])
            continue
        for clients, level in result["levels"].items():
            rows.append([name, clients, f"{level.get('images_per_s', 0):.2f}", _fmt_s(level.get("p50_s")),
                         _fmt_s(level.get("p95_s")), _fmt_rss(level.get("server_peak_rss")), f"{level['load']:.1f}"])
        progress(f"lever server threads / {name} done")
    return {"title": f"ORT threads inside the HTTP service ({key} JPEG → PNG)",
            "note": "A real server per variant, the rest as shipped.", "columns": columns, "rows": rows}


def preset_table(presets: tuple[str, ...], shapes: list[list[int]], repeats: int, progress) -> dict:
    """Export each preset untrained (timing does not depend on weight values) and time it in ORT."""
    from models.export import export_onnx
    from models.span import Span, SpanConfig

    columns = ["preset", "input", "MAC/image", "p50", "p95", "peak RSS", "load"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="span-presets-") as tmp:
        for name in presets:
            path = export_onnx(Span(SpanConfig.preset(name)).eval(), Path(tmp) / f"{name}.onnx")
            result = _ort(path, {}, shapes, repeats)
            counted = run_child("bench.workloads", {"kind": "profile", "shapes": shapes, "model": str(path),
                                                    "architecture": SpanConfig.preset(name).to_dict()})
            if "error" in result:
                rows.append([name, *error_cells(result, len(columns) - 1)])
                continue
            for height, width in shapes:
                r = result["shapes"][f"{height}x{width}"]
                macs = counted.get("macs", {}).get(f"{height}x{width}")
                rows.append([name, f"{width}×{height}", f"{macs / 1e9:.0f} G" if macs else "—", _fmt_s(r["p50_s"]),
                             _fmt_s(r["p95_s"]), _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
            progress(f"lever preset / {name} done")
    return {"title": "Featex preset (untrained exports, bare ORT session, shipped options)",
            "note": "Which preset ships is decided by the training issue on detection quality; this is its cost.",
            "columns": columns, "rows": rows}


def int8_table(model: Path, shape: list[int], repeats: int, progress) -> dict:
    from models.export import calibration_photos, quantize_convs  # the shipped recipe (train extra's onnx)

    columns = ["model", "p50", "p95", "peak RSS", "load"]
    rows = []
    photos = calibration_photos()
    key = f"{shape[0]}x{shape[1]}"
    with tempfile.TemporaryDirectory(prefix="span-int8-") as tmp:
        variants = [("fp32 (span.onnx)", model)]
        for name, select in (("int8 Featex 3x3 convolutions (span.int8.onnx's recipe)", None),
                             ("int8 every convolution but the first layer", lambda node: "/forensic/" not in node)):
            try:
                target = Path(tmp) / f"{len(variants)}.onnx"
                options = {"select": select} if select else {}
                variants.append((name, quantize_convs(model, target, photos, **options) if photos else None))
            except Exception as exc:  # quantisation tooling missing or failing: say so in the table
                rows.append([name, *error_cells({"error": f"{type(exc).__name__}: {exc}"}, len(columns) - 1)])
        for name, path in variants:
            if path is None:
                continue
            result = _ort(path, {}, [shape], repeats)
            if "error" in result:
                rows.append([name, *error_cells(result, len(columns) - 1)])
                continue
            r = result["shapes"][key]
            rows.append([name, _fmt_s(r["p50_s"]), _fmt_s(r["p95_s"]), _fmt_rss(result["peak_rss"]), f"{result['load']:.1f}"])
            progress(f"lever int8 / {name}: p50 {_fmt_s(r['p50_s'])}")
    return {"title": f"int8 quantisation, speed only (bare ORT session, input {shape[1]}×{shape[0]})",
            "note": "Speed only. Issue 6 allows int8 only if the dev-benchmark pixel AUC drops by less than 0.01: "
                    "measured with `span evaluate --record` on each model (see 'int8' below the table; the "
                    "service's precision 'auto' reads those scores). Calibration: 8 BSDS500 photos at 320×240.",
            "columns": columns, "rows": rows}


def run_levers(photos: dict[str, Path], model_dir: Path, *, repeats: int = 3, requests: int = 4,
               presets: tuple[str, ...] = ("pooled", "slim"),
               progress: Callable[[str], None] = print) -> list[dict]:
    model = Path(model_dir) / "span.onnx"
    key = "1024x768" if "1024x768" in photos else next(iter(photos))
    size = SIZES.get(key)
    shape = [size.height, size.width] if size else [int(v) for v in reversed(key.split("x"))]
    tables = [
        session_options_table(model, shape, repeats, progress),
        cached_graph_table(model, shape, repeats, progress),
        variable_shapes_table(model, progress, VARIABLE_SHAPES if "1024x768" in photos else [shape, shape[::-1]]),
        policy_table(photos, model_dir, repeats, progress),
        server_threads_table(photos, model_dir, requests, progress),
        int8_table(model, shape, repeats, progress),
    ]
    if presets:
        shapes = [[512, 512], shape] if shape != [512, 512] else [shape]
        tables.append(preset_table(presets, shapes, repeats, progress))
    return tables
