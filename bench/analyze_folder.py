"""Every file of a folder through a real server's POST /v1/analyze?layers=all: which layers
apply where, the refusals with their reasons, the slowest files, and whether the server is
still ready after.

    python -m bench.analyze_folder [FOLDER]      # default: ../shared/data/photos/exif-samples
"""
from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import httpx

from spancore.testing import EXIF_SAMPLES, running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=EXIF_SAMPLES)
    files = sorted(p for p in parser.parse_args().folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    statuses: collections.Counter = collections.Counter()
    applicable: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    seconds: list[tuple[float, str]] = []
    with running_server({"SPAN_LAYER_WORKERS": "1"}) as server:
        for path in files:
            started = time.perf_counter()
            answer = httpx.post(server.url + "/v1/analyze", params={"layers": "all"},
                                files={"image": (path.name, path.read_bytes())}, timeout=600)
            seconds.append((round(time.perf_counter() - started, 1), path.name))
            statuses[answer.status_code] += 1
            if answer.status_code != 200:
                reasons[("HTTP", f"{answer.status_code} {answer.json()['error']['code']}")] += 1
                continue
            for name, section in answer.json()["layers"].items():
                applicable[(name, section["applicable"])] += 1
                if not section["applicable"]:
                    reasons[(name, section["reason"][:80])] += 1
        ready = httpx.get(server.url + "/health/ready").status_code
    print(json.dumps({"files": len(files), "status": {str(k): v for k, v in statuses.items()}, "ready_after": ready}))
    for (name, flag), count in sorted(applicable.items()):
        print(f"{name}: {'applicable' if flag else 'not applicable'} on {count}")
    for (where, reason), count in reasons.most_common():
        print(f"{count} x {where}: {reason}")
    print("slowest (s):", sorted(seconds)[-5:])


if __name__ == "__main__":
    main()
