"""Cost of each forensic layer (service/layers/) on one photo, in this process, one core's work each.

    .venv/bin/python -m bench.layers_cost [--size 1024x768] [--repeats 5] [--json out.json]

The photo is bench.common's real test photo at that size (a JPEG at quality 90); each layer
runs once to warm up, then `--repeats` times (stopping after --max-seconds per layer once 3
runs are in). Prints a Markdown table: median and p95 wall milliseconds per layer and the
process CPU time per run (all threads: OpenCV uses several), with the load average before
and after, since wall figures mean little on a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.common import SIZES, Size, machine, summarise, test_photo, timed_loop
from service.decode import decode_image
from service.layers import ANALYSERS, Photo, run_layer


def measure(size: Size, repeats: int, max_seconds: float) -> dict:
    data = test_photo(size)
    decoded = decode_image(data, max_pixels=size.pixels)
    photo = Photo(data=data, rgb=decoded.rgb, format=decoded.metadata.format, orientation=decoded.metadata.orientation)
    load_before = os.getloadavg()[0]
    rows = {}
    for name in ANALYSERS:
        result = run_layer(name, photo)  # warm-up, and whether it applies to this photo
        cpu_started = time.process_time()
        latencies = timed_loop(lambda: run_layer(name, photo), repeats, max_seconds)
        cpu = (time.process_time() - cpu_started) / len(latencies)
        rows[name] = {**summarise(latencies), "cpu_s": cpu, "applicable": result.applicable, "reason": result.reason}
    return {"size": size.label, "rows": rows, "load_before": load_before, "load_after": os.getloadavg()[0]}


def table(report: dict) -> str:
    lines = [f"Layers on a {report['size']} JPEG (q90), {report['machine'].get('cpu')}, "
             f"load average {report['load_before']:.1f} before / {report['load_after']:.1f} after:", "",
             "| layer | median wall | p95 wall | CPU per run | runs | applies |", "|---|---:|---:|---:|---:|---|"]
    for name, row in report["rows"].items():
        applies = "yes" if row["applicable"] else f"no: {row['reason']}"
        lines.append(f"| {name} | {row['p50_s'] * 1000:.0f} ms | {row['p95_s'] * 1000:.0f} ms | "
                     f"{row['cpu_s'] * 1000:.0f} ms | {row['n']} | {applies} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x768", help="a key of bench.common.SIZES or WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.size in SIZES:
        size = SIZES[args.size]
    else:
        width, height = (int(v) for v in args.size.lower().split("x"))
        size = Size(f"{width}×{height}", width, height)
    report = {**measure(size, args.repeats, args.max_seconds), "machine": machine()}
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
