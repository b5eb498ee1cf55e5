"""What the `resize` policy's working size costs a real server: memory and latency per photo size.

    python -m bench.working_size                                   # 1 MP and 4 MP, 12 MP and 50 MP photos
    python -m bench.working_size --pixels 1048576 4194304 --clients 1 4 --json out.json
    python -m bench.working_size --pixels 4194304 --env SPAN_MAX_PIXELS_IN_FLIGHT=80000000 \
        SPAN_MAX_BODY_BYTES_IN_FLIGHT=268435456 SPAN_INTRA_OP_THREADS=2        # as the k8s pod runs

For each working size (`SPAN_MAX_WORKING_PIXELS`) one real `span serve` process on loopback
(int8 on CPU, every other setting at its default) answers the same JPEGs from 1 and then 4
concurrent clients; the server's peak RSS (kernel high-water mark, reset between levels) is
the figure a pod's memory request and limit are sized from (deploy/k8s/base/deployment.yaml,
docs/scaling.md). Accuracy of the working sizes is bench/large_policy.py's job.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.common import GiB, machine, write_photos
from bench.http_load import http_rows

MP = 1024 * 1024


def measure(pixels: list[int], photo_keys: list[str], clients: list[int], requests: int,
            extra_env: dict[str, str] | None = None, progress=print) -> dict:
    results: dict = {"machine": machine(), "env": extra_env or {}, "rows": {}}
    with tempfile.TemporaryDirectory() as folder:
        photos = write_photos(photo_keys, Path(folder))
        for working in pixels:
            env = {"SPAN_MAX_WORKING_PIXELS": str(working), "SPAN_LARGE_IMAGE_POLICY": "resize",
                   "SPAN_PROVIDERS": '["CPUExecutionProvider"]', **(extra_env or {})}
            progress(f"working size {working / MP:.0f} MP")
            results["rows"][str(working)] = http_rows(photos, clients, requests, env, progress)
    results["load_end"] = os.getloadavg()[0]
    return results


def table(results: dict) -> str:
    lines = ["| working size | photo | clients | p50 | p95 | images/s | server peak RSS | load |",
             "|---|---|---|---|---|---|---|---|"]
    for working, photos in results["rows"].items():
        for key, row in photos.items():
            for clients, level in row["levels"].items():
                lines.append(
                    f"| {int(working) / MP:.0f} MP | {key} | {clients} | {level.get('p50_s', float('nan')):.2f} s "
                    f"| {level.get('p95_s', float('nan')):.2f} s | {level.get('images_per_s', 0):.2f} "
                    f"| {level['server_peak_rss'] / GiB:.2f} GiB | {level['load']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, nargs="+", default=[MP, 4 * MP], help="working sizes to compare")
    parser.add_argument("--photos", nargs="+", default=["12mp", "50mp"], help="photo sizes (bench.common.SIZES)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=8, help="requests per level (at least one per client)")
    parser.add_argument("--env", nargs="*", default=[], metavar="SPAN_X=VALUE",
                        help="further server settings, e.g. the Kubernetes pod's (deploy/k8s/base/deployment.yaml)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    extra_env = dict(item.split("=", 1) for item in args.env)
    results = measure(args.pixels, args.photos, args.clients, args.requests, extra_env)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
