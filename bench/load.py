"""Bounded load test against a live `span serve` on loopback: throughput, latency, errors, 503s.

    python bench/load.py --spawn --clients 4 --requests 40            # start a server, load it, stop it
    python bench/load.py --url http://127.0.0.1:8000 --clients 8 --duration 60
    python bench/load.py --spawn --env SPAN_QUEUE_SIZE=2 --clients 16 --requests 64   # overload: fast 503s

Closed loop: each of --clients sends one request, waits for the answer, sends the next,
until --requests have been sent or --duration seconds have passed, whichever is first
(both are always bounded). Every request is a POST /v1/localize of the same image
(--image FILE, or a generated --size WxH JPEG). It prints one JSON report: completed,
throughput, p50/p90/p99/max latency of 200s, 503 count (each with Retry-After or not) and
their latency, other statuses, transport errors. Exit status 1 if any 5xx other than 503
or any transport error was seen.

Why not locust: it brings gevent and a web UI we do not need, its percentiles are bucketed,
its headless runs are bounded by time but not by request count, and tests cannot import
it cheaply. This is asyncio + httpx (already a dependency): exact per-request latencies,
both bounds, and `run_load()` is called directly by tests/e2e/test_load_and_shutdown.py.
Traffic goes only to loopback unless --allow-remote is given.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadReport:
    clients: int
    sent: int = 0
    wall_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    transport_errors: dict[str, int] = field(default_factory=dict)
    ok: int = 0
    rejected_503: int = 0
    rejected_503_with_retry_after: int = 0
    other_5xx: int = 0
    throughput_ok_per_s: float = 0.0
    latency_ok_s: dict[str, float] = field(default_factory=dict)
    latency_503_s: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest-rank percentile
        return round(ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))], 4)

    return {"n": len(ordered), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(ordered[-1], 4),
            "mean": round(statistics.fmean(ordered), 4)}


async def run_load(
    url: str,
    body: bytes,
    *,
    clients: int,
    requests: int,
    duration_s: float,
    timeout_s: float = 120.0,
    path: str = "/v1/localize",
    allow_remote: bool = False,
) -> LoadReport:
    """Closed-loop load: `clients` concurrent senders, at most `requests` requests and `duration_s` seconds."""
    host = urlparse(url).hostname
    if host not in LOOPBACK and not allow_remote:
        raise ValueError(f"refusing to send load to {host}: loopback only (allow_remote=True to override)")
    report = LoadReport(clients=clients)
    statuses: Counter = Counter()
    errors: Counter = Counter()
    ok_latencies: list[float] = []
    rejected_latencies: list[float] = []
    tickets = iter(range(requests))
    started = time.perf_counter()
    deadline = started + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def sender() -> None:
            for _ in tickets:
                if time.perf_counter() >= deadline:
                    return
                sent_at = time.perf_counter()
                report.sent += 1
                try:
                    response = await client.post(path, content=body, headers={"Content-Type": "application/octet-stream"})
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - sent_at
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    ok_latencies.append(elapsed)
                elif response.status_code == 503:
                    rejected_latencies.append(elapsed)
                    report.rejected_503_with_retry_after += "retry-after" in response.headers
                    if "retry-after" in response.headers:
                        # A well-behaved client honours Retry-After; a load test that ignores it
                        # would only measure how fast we can say no. Wait, but never past the deadline.
                        wait = float(response.headers["retry-after"])
                        await asyncio.sleep(max(0.0, min(wait, deadline - time.perf_counter())))

        await asyncio.gather(*(sender() for _ in range(clients)))

    report.wall_s = round(time.perf_counter() - started, 3)
    report.statuses = dict(statuses)
    report.transport_errors = dict(errors)
    report.ok = statuses.get("200", 0)
    report.rejected_503 = statuses.get("503", 0)
    report.other_5xx = sum(n for s, n in statuses.items() if s.startswith("5") and s != "503")
    report.throughput_ok_per_s = round(report.ok / report.wall_s, 3) if report.wall_s else 0.0
    report.latency_ok_s = percentiles(ok_latencies)
    report.latency_503_s = percentiles(rejected_latencies)
    return report


def sample_jpeg(width: int, height: int) -> bytes:
    """A deterministic photo-like JPEG (gradients + noise) of the given size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x ^ y) % 256], axis=2)
    rgb = np.clip(rgb + rng.integers(-16, 16, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="A running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--spawn", action="store_true", help="Start a server on a free loopback port for the run")
    parser.add_argument("--env", action="append", default=[], metavar="SPAN_X=V", help="Setting for --spawn (repeat)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="Most requests to send (bound)")
    parser.add_argument("--duration", type=float, default=120.0, help="Most seconds to send for (bound)")
    parser.add_argument("--timeout", type=float, default=120.0, help="Per-request timeout, seconds")
    parser.add_argument("--image", type=Path, help="Image file to send (default: a generated JPEG)")
    parser.add_argument("--size", default="320x240", help="Generated JPEG size WxH when no --image")
    parser.add_argument("--format", default="json", choices=["png", "json", "overlay"])
    parser.add_argument("--allow-remote", action="store_true")
    args = parser.parse_args(argv)
    if bool(args.url) == args.spawn:
        parser.error("give exactly one of --url and --spawn")

    body = args.image.read_bytes() if args.image else sample_jpeg(*map(int, args.size.lower().split("x")))
    path = f"/v1/localize?format={args.format}"

    def load(url: str) -> LoadReport:
        return asyncio.run(run_load(url, body, clients=args.clients, requests=args.requests,
                                    duration_s=args.duration, timeout_s=args.timeout, path=path,
                                    allow_remote=args.allow_remote))

    if args.spawn:
        from spancore.testing import running_server  # the same server launcher the tests use

        env = dict(item.split("=", 1) for item in args.env)
        with running_server(env) as server:
            report = load(server.url)
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
    else:
        report = load(args.url)
        metrics = httpx.get(args.url + "/metrics", timeout=10).text
    batches = [line for line in metrics.splitlines() if line.startswith(("span_batch_size_sum", "span_batch_size_count"))]
    output = {"url": args.url or "spawned", "image_bytes": len(body),
              "settings": dict(item.split("=", 1) for item in args.env),
              **report.as_json(), "server_batch_size": batches}
    print(json.dumps(output, indent=2))
    return 1 if report.other_5xx or report.transport_errors else 0


if __name__ == "__main__":
    sys.exit(main())
