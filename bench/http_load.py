"""The HTTP service end to end: a real `span serve` process on loopback, concurrent clients.

Each client is a thread with its own keep-alive connection that POSTs the JPEG body to
/v1/localize (the default answer: the heatmap PNG) as soon as its previous answer arrived.
Latency is per request, as the client sees it; images/s is answers over wall time. The
server's peak RSS is its kernel high-water mark, reset between concurrency levels.
The clients share the machine with the server (loopback), so they take a little CPU from it.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx

from bench.common import peak_rss_of, reset_peak_rss, summarise


def server(env: dict[str, str] | None = None):
    """A real `span serve` on a free loopback port, ready, stopped (SIGTERM) on exit.

    The test suite's launcher (spancore/testing.py) is the one place that knows how to start and
    stop the server, so the benchmark uses it too rather than keeping a copy."""
    from spancore.testing import running_server

    return running_server(env, ready_timeout=300)


def load(url: str, body: bytes, clients: int, requests: int, timeout: float = 600) -> dict:
    """`requests` POSTs of `body` from `clients` concurrent clients; latency stats and failures."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    remaining = [requests]
    lock = threading.Lock()
    headers = {"content-type": "image/jpeg"}

    def client() -> None:
        with httpx.Client(timeout=timeout) as http:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                try:
                    answer = http.post(url + "/v1/localize", content=body, headers=headers)
                    ok = answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n"
                    key = None if ok else f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    if key is None:
                        latencies.append(elapsed)
                    else:
                        failures[key] = failures.get(key, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    stats = summarise(latencies, wall_s=wall, images=len(latencies)) if latencies else {"n": 0}
    return {**stats, "clients": clients, "requests": requests, "failures": failures, "wall_s": wall}


def breakdown(url: str, body: bytes) -> dict:
    """The server's own timings for one request (decode, queue_wait, inference, encode, total), in ms."""
    answer = httpx.post(url + "/v1/localize?format=json", content=body,
                        headers={"content-type": "image/jpeg"}, timeout=600)
    answer.raise_for_status()
    return answer.json().get("timings_ms", {})


def http_rows(photos: dict[str, Path], concurrency: list[int], requests: int,
              env: dict[str, str] | None = None, progress=print) -> dict:
    """One server for the whole run; for each photo and concurrency level: stats + server peak RSS."""
    rows: dict[str, dict] = {}
    with server(env) as running:
        for key, path in photos.items():
            body = path.read_bytes()
            load(running.url, body, 1, 1)  # first request at this shape: ORT plans its memory
            rows[key] = {"breakdown_ms": breakdown(running.url, body), "levels": {}}
            for clients in concurrency:
                reset = reset_peak_rss(running.process.pid)
                count = max(requests, clients)  # every client sends at least one
                result = load(running.url, body, clients, count)
                result["server_peak_rss"] = peak_rss_of(running.process.pid)
                result["peak_rss_reset"] = reset
                result["load"] = os.getloadavg()[0]
                rows[key]["levels"][clients] = result
                progress(f"http {key} clients={clients}: p50 {result.get('p50_s', float('nan')):.2f} s, "
                         f"{result.get('images_per_s', 0):.2f} img/s, failures {result['failures']}")
    return rows
