"""Latency of one 1024x768 JPEG through HTTP: a real `span serve` on loopback, one client.

    .venv/bin/python -m bench.http_latency [--requests 10] [--format png|json|overlay] [--image PATH]

Prints p50/p95/mean of the client-side latency, and the server's own breakdown (decode,
queue wait, inference, encode) of one request. Settings come from SPAN_* variables as
for `span serve`. The figures are measured, not asserted anywhere.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx

from bench.common import summarise
from bench.http_load import breakdown, server
from service.settings import REPO_ROOT

DEFAULT_IMAGE = REPO_ROOT.parent / "shared" / "data" / "photos" / "exif-samples" / "jpg" / "exif-org" / "fujifilm-dx10.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--format", choices=["png", "json", "overlay"], default="png")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a 1024x768 JPEG by default")
    args = parser.parse_args()
    body = args.image.read_bytes()
    with server() as running, httpx.Client(base_url=running.url, timeout=600) as client:
        client.post(f"/v1/localize?format={args.format}", content=body).raise_for_status()  # first of this shape
        latencies = []
        for _ in range(args.requests):
            started = time.perf_counter()
            client.post(f"/v1/localize?format={args.format}", content=body).raise_for_status()
            latencies.append(time.perf_counter() - started)
        stats = summarise(latencies)
        model = client.get("/v1/model").json()
        print(f"{args.image.name} via POST /v1/localize?format={args.format}, {args.requests} sequential requests, "
              f"provider {model['provider']}, policy {model['large_image_policy']}")
        print(f"p50 {stats['p50_s'] * 1000:.0f} ms   p95 {stats['p95_s'] * 1000:.0f} ms   mean {stats['mean_s'] * 1000:.0f} ms")
        print("server breakdown (ms):", breakdown(running.url, body))


if __name__ == "__main__":
    main()
