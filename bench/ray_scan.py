"""Throughput of `span scan --ray` on this machine: images/s and memory per actor, for several
actor pools on a local Ray instance (docs/scaling.md quotes the figures).

    nice -n 10 .venv/bin/python -m bench.ray_scan [--images 24] [--size 1024x768] [--pool 1x1 --pool 2x1 --pool 1x2]

A pool is ACTORSxTHREADS (ORT threads per actor). Each pool scans the same N copies of one real
photo into a fresh output folder. images/s is the steady rate, from the first summary row to the
last (Ray's start and the actors' model load excluded; they are reported as "start"). Memory is
the peak RSS of each actor process, sampled every 0.25 s. Settings come from SPAN_* variables.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from bench.common import SIZES, Size, test_photo


def _actor_rss(peaks: dict[int, int], stop: threading.Event) -> None:
    import psutil

    while not stop.is_set():
        for process in psutil.process_iter(["cmdline"]):
            try:
                if "MapBatches(Analyser)" in " ".join(process.info["cmdline"] or []):
                    peaks[process.pid] = max(peaks.get(process.pid, 0), process.memory_info().rss)
            except psutil.Error:
                pass
        stop.wait(0.25)


def measure(folder: Path, images: int, actors: int, threads: int) -> dict:
    from service.scan_ray import RayOptions, ray_scan

    arrivals: list[float] = []
    peaks: dict[int, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_actor_rss, args=(peaks, stop), daemon=True)
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="span-bench-ray-") as out:
        status = ray_scan([str(folder)], Path(out), RayOptions(actors=actors, threads_per_actor=threads),
                          progress=False, on_row=lambda row: arrivals.append(time.monotonic()))
    stop.set()
    sampler.join()
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
    return {"actors": actors, "threads": threads, "status": int(status), "images": len(arrivals),
            "start_s": arrivals[0] - began if arrivals else float("nan"), "images_per_s": steady,
            "total_s": time.monotonic() - began, "actor_rss_mib": sorted(v / 2**20 for v in peaks.values()),
            "load": (load_before + os.getloadavg()[0]) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--size", default="1024x768", help="1024x768, 12mp, ... or WIDTHxHEIGHT")
    parser.add_argument("--pool", action="append", help="ACTORSxTHREADS (repeat) [default: 1x1 2x1 1x2]")
    args = parser.parse_args()
    size = SIZES.get(args.size) or Size(args.size, *map(int, args.size.split("x")))
    pools = [tuple(map(int, p.split("x"))) for p in (args.pool or ["1x1", "2x1", "1x2"])]
    with tempfile.TemporaryDirectory(prefix="span-bench-photos-") as folder:
        photo = test_photo(size)
        for index in range(args.images):
            (Path(folder) / f"p{index:03d}.jpg").write_bytes(photo)
        print(f"| pool (actors × ORT threads) | images/s (steady) | per core | start | peak RSS per actor | load |")
        print("|---|---|---|---|---|---|")
        for actors, threads in pools:
            r = measure(Path(folder), args.images, actors, threads)
            rss = ", ".join(f"{v:.0f}" for v in r["actor_rss_mib"]) or "?"
            print(f"| {actors} × {threads} | {r['images_per_s']:.2f} | {r['images_per_s'] / (actors * threads):.2f} "
                  f"| {r['start_s']:.1f} s | {rss} MiB | {r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
