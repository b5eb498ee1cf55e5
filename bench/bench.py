"""The speed and memory study of issue 6: torch eager, the ONNX Runtime engine, the HTTP service.

    span bench --out docs/performance.md            # everything; rewrites the generated part of the doc
    span bench --sizes 512x512 --no-http --no-levers  # one quick row pair, printed

For each input size: images/s, p50 and p95 latency and peak RSS of
  (a) torch eager on weights/span.pt, fed exactly what the engine feeds ONNX Runtime,
  (b) service.engine.Engine.predict (what `span serve` runs per image, ONNX Runtime on CPU),
  (c) the HTTP service end to end (real `span serve` on loopback) with 1, 4 and 16 clients,
plus multiply-adds per image (counted from the model config), the share of the machine's
fp32 peak (a large numpy matmul) that reaches, and the levers of bench/levers.py.
Every figure carries the 1-minute load average when it was taken: figures taken while
other jobs ran are not comparable with figures from a quiet machine.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import GiB, REPO_ROOT, SIZES, Size, error_cells, machine, run_child, write_photos
from bench.common import fmt_bytes as _gib
from bench.common import fmt_seconds as _s

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DEFAULT_SIZES = ["512x512", "1024x768", "12mp", "50mp"]
MEMORY_ONLY = {"50mp"}  # measured for the memory target: engine and one HTTP client, no torch
DEFAULT_CONCURRENCY = [1, 4, 16]


def parse_size(key: str) -> tuple[str, Size]:
    if key in SIZES:
        return key, SIZES[key]
    match = re.fullmatch(r"(\d+)x(\d+)", key)
    if not match:
        raise ValueError(f"size {key!r}: use one of {', '.join(SIZES)} or WIDTHxHEIGHT")
    width, height = int(match[1]), int(match[2])
    return key, Size(f"{width}×{height}", width, height)


def run(
    *,
    sizes: list[str] = DEFAULT_SIZES,
    repeats: int = 8,
    requests: int = 8,
    concurrency: list[int] = DEFAULT_CONCURRENCY,
    max_seconds: float = 60.0,
    model_dir: Path | None = None,
    torch_rows: bool = True,
    http: bool = True,
    levers: bool = True,
    presets: tuple[str, ...] = ("pooled", "slim"),
    command: str = "span bench",
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict:
    """Measure everything asked for; returns the results as a JSON-able dict (see render())."""
    model_dir = Path(model_dir or REPO_ROOT / "weights").resolve()
    settings = {"model_dir": str(model_dir)}
    chosen = dict(parse_size(key) for key in sizes)
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
        "command": command,
        "machine": machine(),
        "model": _model_summary(model_dir),
        "load_start": os.getloadavg()[0],
        "sizes": {k: {"label": s.label, "width": s.width, "height": s.height} for k, s in chosen.items()},
        "repeats": repeats,
        "settings": _engine_settings(model_dir),
        "rows": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="span-bench-") as tmp:
        photos = _photos(chosen, Path(tmp))
        progress(f"machine: {results['machine']['cpu']}, {results['machine'].get('cores')} cores, "
                 f"load {results['load_start']:.1f}")
        results["peak"] = run_child("bench.workloads", {"kind": "matmul", "n": 4096 if len(chosen) > 1 else 1024})
        progress(f"fp32 matmul peak: {results['peak'].get('gflops', float('nan')):.0f} GFLOP/s")

        for key, path in photos.items():
            row = results["rows"].setdefault(key, {})
            task = {"image": str(path), "repeats": repeats, "max_seconds": max_seconds, "settings": settings}
            row["engine"] = run_child("bench.workloads", {"kind": "engine", **task})
            progress(_line(f"engine {key}", row["engine"]))
            if row["engine"].get("precision", "fp32") != "fp32":
                # torch runs the fp32 weights: ORT against torch is compared on the same weights too.
                fp32 = {**task, "settings": {**settings, "precision": "fp32"}}
                row["engine_fp32"] = run_child("bench.workloads", {"kind": "engine", **fp32})
                progress(_line(f"engine {key} fp32", row["engine_fp32"]))
            if torch_rows and key not in MEMORY_ONLY:
                row["torch"] = run_child("bench.workloads", {"kind": "torch", **task})
                progress(_line(f"torch  {key}", row["torch"]))

        shapes = {tuple(r["engine"]["network_input"][2:]) for r in results["rows"].values() if "network_input" in r["engine"]}
        if shapes:
            largest = max(shapes, key=lambda s: s[0] * s[1])
            profile = run_child("bench.workloads", {"kind": "profile", "shapes": sorted(shapes),
                                                    "breakdown_shape": list(largest), "model": str(model_dir / "span.onnx")})
            results["profile"] = profile
            progress(f"multiply-adds counted for {len(shapes)} input shapes")

        if http:
            env = {"SPAN_MODEL_DIR": str(model_dir), "SPAN_PROVIDERS": '["CPUExecutionProvider"]'}
            from bench.http_load import http_rows

            levels = {k: ([1] if k in MEMORY_ONLY else concurrency) for k in photos}
            for key, path in photos.items():
                rows = http_rows({key: path}, levels[key], requests, env, progress)
                results["rows"][key]["http"] = rows[key]

        if levers:
            from bench.levers import run_levers

            results["levers"] = run_levers(photos, model_dir, repeats=max(3, repeats // 2), requests=max(4, requests // 2),
                                           presets=tuple(presets),
                                           progress=progress)
    results["load_end"] = os.getloadavg()[0]
    results["model_end"] = _model_summary(model_dir)  # weights replaced mid-run make the rows incomparable
    results["duration_s"] = time.perf_counter() - started
    return results


def _photos(chosen: dict[str, Size], folder: Path) -> dict[str, Path]:
    custom = {k: s for k, s in chosen.items() if k not in SIZES}
    SIZES.update(custom)  # so write_photos finds custom WIDTHxHEIGHT sizes too
    try:
        return write_photos(list(chosen), folder)
    finally:
        for key in custom:
            SIZES.pop(key, None)


def _engine_settings(model_dir: Path) -> dict:
    """The settings every row runs with (SPAN_* from the environment, as `span serve` reads them)."""
    from service.settings import Settings

    settings = Settings(model_dir=model_dir)
    keys = ("precision", "large_image_policy", "max_working_pixels", "max_batch_size", "max_queue_delay_ms",
            "intra_op_threads", "decode_workers", "queue_size")
    return {key: getattr(settings, key) for key in keys}


def _model_summary(model_dir: Path) -> dict:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    return {
        "name": manifest.get("name"),
        "preset": manifest.get("architecture", {}).get("name"),
        "trained": manifest.get("trained"),
        "sha256": manifest.get("files", {}).get("span.onnx", {}).get("sha256", "")[:12],
    }


def _line(name: str, row: dict) -> str:
    if "error" in row:
        return f"{name}: ERROR {row['error'][:300]}"
    return (f"{name}: p50 {row['p50_s']:.2f} s, p95 {row['p95_s']:.2f} s, {row['images_per_s']:.2f} img/s, "
            f"peak RSS {row['peak_rss'] / GiB:.2f} GiB, load {row['load']:.1f}")


# ---------------------------------------------------------------------------- rendering
MAIN_COLUMNS = ["size", "path", "clients", "images/s", "p50", "p95", "peak RSS", "n", "load"]


def render(results: dict) -> str:
    """The generated part of docs/performance.md (Markdown)."""
    m = results["machine"]
    model = results["model"]
    out = [
        f"Generated by `{results['command']}` on {results['date']} in {results.get('duration_s', 0) / 60:.0f} min.",
        "",
        f"- Machine: {m.get('cpu')}, {m.get('cores')} cores × {m.get('threads_per_core', 1)} thread"
        f" ({m.get('logical_cpus')} logical CPUs), {m.get('memory_gib', 0):.0f} GiB RAM"
        f"{', ' + m['hypervisor'] + ' guest' if m.get('hypervisor') else ''}; SIMD: {m.get('simd', '?')}",
        f"- Software: Python {m.get('python')}, onnxruntime {m.get('onnxruntime')}, numpy {m.get('numpy')}"
        + _torch_version(results),
        f"- Commit: `{m.get('commit')}`{' (uncommitted changes in service/, models/, bench/ or weights/)' if m.get('dirty') else ''}",
        f"- Model: {model['name']} preset `{model['preset']}`, onnx sha256 {model['sha256']}…, "
        f"{'trained' if model['trained'] else 'UNTRAINED (speed and memory do not depend on the weights values)'}",
        "- Engine settings: " + ", ".join(f"{k} {v}" for k, v in results.get("settings", {}).items())
        + " (intra_op_threads 0 = ORT's default, one per physical core)",
        f"- Load average (1 min): {results['load_start']:.2f} at start, {results.get('load_end', float('nan')):.2f} at end"
        + ("  **— the machine was busy: treat these figures as upper bounds**"
           # the bench's own threads account for up to one per CPU; more than that is someone else
           if max(results["load_start"], results.get("load_end", 0)) > (m.get("logical_cpus") or 1) + 0.5 else ""),
        "",
    ]
    if results.get("model_end", model) != model:
        out += [f"**Warning: the weights changed during this run** (onnx sha256 {model['sha256']}… at start, "
                f"{results['model_end']['sha256']}… at end): rows measured different models. Run it again.", ""]
    out += _targets(results)
    out += ["### Latency, throughput, memory", "",
            "Engine and torch rows: one image after another in one process, decoded photo in, map out "
            "(decode not included); peak RSS is that process's high-water mark. HTTP rows: JPEG body in, "
            "heatmap PNG out, clients on the same machine; peak RSS is the server's.", ""]
    out += _table(MAIN_COLUMNS, _main_rows(results))
    out += _flops(results)
    out += _breakdowns(results)
    for table in results.get("levers", []):
        out += [f"### Lever: {table['title']}", ""]
        if table.get("note"):
            out += [table["note"], ""]
        out += _table(table["columns"], table["rows"])
    return "\n".join(out).rstrip() + "\n"


def _torch_version(results: dict) -> str:
    for row in results["rows"].values():
        if "torch" in row.get("torch", {}):
            return f", torch {row['torch']['torch']} (torch rows)"
    return ""


def _table(columns: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _stat_row(size: str, path: str, clients, row: dict, rss_key: str = "peak_rss") -> list:
    if "error" in row:
        return [size, path, clients, *error_cells(row, len(MAIN_COLUMNS) - 3)]
    failures = row.get("failures") or {}
    fails = f" ({sum(failures.values())} failed: {', '.join(failures)})" if failures else ""
    return [size, path, clients, f"{row.get('images_per_s', 0):.2f}{fails}", _s(row.get("p50_s")),
            _s(row.get("p95_s")), _gib(row.get(rss_key)), row.get("n", 0), f"{row.get('load', float('nan')):.1f}"]


def _main_rows(results: dict) -> list[list]:
    rows = []
    for key, row in results["rows"].items():
        label = results["sizes"][key]["label"]
        net = row["engine"].get("network_input")
        suffix = f" → net {net[3]}×{net[2]}" + (f" ×{net[0]} tiles" if net and net[0] > 1 else "") if net else ""
        if "torch" in row:
            rows.append(_stat_row(label + suffix, "torch eager", "—", row["torch"]))
        rows.append(_stat_row(label + suffix, f"ORT engine ({row['engine'].get('precision', 'fp32')})", "—", row["engine"]))
        if "engine_fp32" in row:
            rows.append(_stat_row(label + suffix, "ORT engine (fp32)", "—", row["engine_fp32"]))
        for clients, level in row.get("http", {}).get("levels", {}).items():
            rows.append(_stat_row(label, "HTTP", clients, level, "server_peak_rss"))
    return rows


def _targets(results: dict) -> list[str]:
    rows = results["rows"]
    lines = ["### Where we stand against the targets (issue 6)", "", "| target | measured | verdict |", "|---|---|---|"]
    http_1024 = rows.get("1024x768", {}).get("http", {}).get("levels", {})
    first = http_1024.get(1) or http_1024.get("1")
    if first and "p50_s" in first:
        ok = first["p50_s"] <= 1.0
        lines.append(f"| 1024×768 JPEG → heatmap PNG over HTTP, p50 ≤ 1 s on 2 cores | {_s(first['p50_s'])} "
                     f"(1 client, load {first['load']:.1f}) | {'met' if ok else '**not met**'} |")
    for key, label in (("12mp", "12 MP"), ("50mp", "50 MP")):
        if key not in rows:
            continue
        levels = rows[key].get("http", {}).get("levels", {})
        peaks = [rows[key]["engine"].get("peak_rss") or 0] + [lv.get("server_peak_rss") or 0 for lv in levels.values()]
        peak = max(peaks)
        single = levels.get(1) or levels.get("1") or {}
        completed = "p50_s" in rows[key]["engine"] and (not levels or (single.get("n", 0) > 0 and not single.get("failures")))
        shed = {c: lv["failures"] for c, lv in levels.items() if lv.get("failures")}
        note = f"; under load the service shed requests: {shed}" if shed else ""
        where = "engine and HTTP server, worst case over all client counts" if levels else "engine"
        verdict = "met" if completed and peak < 4 * GiB else "**not met**"
        lines.append(f"| {label} photo completes with peak RSS < 4 GiB | {'completes' if completed else 'FAILS'}, "
                     f"peak {_gib(peak)} ({where}){note} | {verdict} |")
    speedups, shipped = [], []
    for key, row in rows.items():
        same = row.get("engine_fp32", row["engine"])  # torch runs the fp32 weights
        if "torch" in row and "p50_s" in row["torch"] and "p50_s" in same:
            speedups.append(f"{results['sizes'][key]['label']}: {row['torch']['p50_s'] / same['p50_s']:.2f}×")
            if "engine_fp32" in row and "p50_s" in row["engine"]:
                shipped.append(f"{row['torch']['p50_s'] / row['engine']['p50_s']:.2f}×")
    if speedups:
        worst = min(float(s.split(": ")[1][:-1]) for s in speedups)
        also = f" (shipped {rows[next(iter(rows))]['engine'].get('precision')} engine: {', '.join(shipped)})" if shipped else ""
        lines.append(f"| ORT engine ≥ 1.5× faster than torch eager (p50), same fp32 weights | {'; '.join(speedups)}{also} "
                     f"| {'met' if worst >= 1.5 else '**not met**'} |")
    lines.append("| GPU: ≥ 300 images/s of 1024×768, dynamic batching + fp16 | needs a GPU session (bench/gpu.py) | not measured |")
    return lines + [""]


def _flops(results: dict) -> list[str]:
    profile = results.get("profile") or {}
    peak = results.get("peak") or {}
    if "macs" not in profile:
        return []
    gflops_peak = peak.get("gflops")
    lines = ["### Work per image and share of the machine's peak", "",
             f"Practical fp32 peak: **{gflops_peak:.0f} GFLOP/s**, the best of 5 numpy float32 "
             f"{peak.get('n')}×{peak.get('n')} matmuls (2·n³ FLOP each, {peak.get('blas_threads')}, "
             f"load {peak.get('load', float('nan')):.1f}). Multiply-adds counted from the model's SpanConfig at the "
             "network input size (bench/featex_variants.py: every convolution and the attention's products; "
             "elementwise ops and resizes left out, < 1 %). 1 MAC = 2 FLOP. numpy's BLAS does not reach the "
             "cores' peak (ORT's convolutions beat it), so the paper peak is shown too: "
             f"{results['machine'].get('paper_peak_gflops', float('nan')):.0f} GFLOP/s = cores × 32 fp32 FLOP/cycle "
             "× base clock (boost clocks are higher).",
             ""]
    rows = []
    for key, row in results["rows"].items():
        net = row["engine"].get("network_input")
        if not net:
            continue
        macs = profile["macs"].get(f"{net[2]}x{net[3]}", 0) * net[0]
        for path in ("torch", "engine_fp32" if "engine_fp32" in row else "engine"):
            r = row.get(path, {})
            if "p50_s" not in r:
                continue
            achieved = 2 * macs / r["p50_s"] / 1e9
            share = f"{achieved / gflops_peak:.0%}" if gflops_peak else "—"
            paper = results["machine"].get("paper_peak_gflops")
            share += f" / {achieved / paper:.0%}" if paper else ""
            rows.append([results["sizes"][key]["label"], f"{net[3]}×{net[2]}" + (f" ×{net[0]}" if net[0] > 1 else ""),
                         f"{macs / 1e9:.1f} G", f"{2 * macs / 1e9:.0f} G",
                         "torch eager" if path == "torch" else "ORT engine (fp32)", f"{achieved:.0f} GFLOP/s", share])
    lines += _table(["size", "network input", "MAC/image", "FLOP/image", "path", "achieved (p50)", "of matmul / paper peak"], rows)
    return lines


def _breakdowns(results: dict) -> list[str]:
    lines = []
    profile = results.get("profile") or {}
    spent = profile.get("breakdown_s") or {}
    if spent:
        total = sum(spent.values())
        top = sorted(spent.items(), key=lambda kv: -kv[1])[:8]
        rest = total - sum(v for _, v in top)
        lines += ["### Where ORT spends its time (largest network input, fp32 model, shipped session options)", "",
                  "Sum of kernel times per operator type from ORT's profiler, one run after warm-up.", ""]
        lines += _table(["operator", "time", "share"],
                        [[op, _s(v), f"{v / total:.0%}"] for op, v in top] + [["other", _s(rest), f"{rest / total:.0%}"]])
    parts = profile.get("parts_s") or {}
    if parts:
        total = sum(parts.values())
        lines += ["The same run by part of the network:", ""]
        lines += _table(["part", "time", "share"], [[part, _s(v), f"{v / total:.0%}"] for part, v in
                                                     sorted(parts.items(), key=lambda kv: -kv[1])])
    rows = []
    for key, row in results["rows"].items():
        timing = row.get("http", {}).get("breakdown_ms")
        if timing:
            rows.append([results["sizes"][key]["label"]] + [f"{timing.get(k, 0):.0f}" for k in
                                                            ("decode", "queue_wait", "inference", "encode", "total")])
    if rows:
        lines += ["### Server-side time per request (ms, one request, from `?format=json` timings_ms)", ""]
        lines += _table(["size", "decode", "queue wait", "inference", "encode", "total"], rows)
    return lines


def write_doc(path: Path, generated: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Replace the generated block of `path` (between the markers), keeping the prose around it;
    append the block when the file has none, create the file when it does not exist."""
    begin, end = markers
    block = f"{begin}\n{generated}{end}"
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Performance\n\n{block}\n")
        return
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        path.write_text(head + block + rest.split(end, 1)[1])
    else:
        path.write_text(text.rstrip("\n") + f"\n\n{block}\n")


def main(*, out: Path | None = None, json_out: Path | None = None, **options) -> dict:
    """Run, print the Markdown, and write it into `out` (and the raw figures into `json_out`) when asked."""
    results = run(**options)
    generated = render(results)
    print(generated)
    if out:
        write_doc(Path(out), generated)
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results
