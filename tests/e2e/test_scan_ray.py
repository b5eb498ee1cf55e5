"""`span scan --ray`: a real Ray cluster of two processes on this machine (a head and a worker
node, one CPU each, started with `ray start` and torn down after), real photos, the shipped model.

The Ray scan must give what the local scan gives: the same names, digests, scores and per-file
errors; it must survive an actor killed mid-scan with every file exactly once in the summary.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spancli.main import ray_address_optional
from service.scan_inputs import collect_inputs
from spancore.testing import EXIF_SAMPLES, ROOT, free_port

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'; make test installs it)")

from service.scan_ray import RayOptions, collect_sources, plan_pool  # noqa: E402  (needs pyarrow, from ray)

EXIF = EXIF_SAMPLES / "jpg"
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.skipif(not EXIF.is_dir(), reason=f"shared data not found at {EXIF} (set SPAN_SHARED_DATA)")
SCAN_ENV = {"SPAN_MAX_WORKING_PIXELS": str(256 * 256)}   # small network inputs: quick on 2 loaded cores


@dataclass
class Cluster:
    address: str
    env: dict[str, str]


def _wait_for(predicate, timeout: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"{what} after {timeout:.0f} s:\n" + "\n".join(p.read_text(errors="replace")[-3000:] for p in logs))


@pytest.fixture(scope="module")
def ray_cluster():
    """`ray start --head` and `ray start --address=...` as two process groups of ours, one CPU each."""
    logs = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))   # short: Ray's socket paths live below it
    # Ray 2.60 turns token authentication on for clusters started by `ray start`: give every
    # process of this test cluster (nodes and drivers) the same fresh token.
    # Ray's memory monitor kills workers when the *machine* is above 95 % of its memory; on a
    # development machine shared with training runs that is other people's memory: off here.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0"}
    started: list[subprocess.Popen] = []

    def start(name: str, *arguments: str) -> Path:
        log = logs / f"{name}.log"
        started.append(subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--num-gpus=0", *arguments],
                                        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True))   # its own process group: torn down by id
        return log

    def two_nodes(address: str) -> bool:
        status = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True,
                                text=True, timeout=60)
        return status.stdout.count(" node_") >= 2

    def started_or_exited(process: subprocess.Popen, ready):
        return lambda: ready() or (process.poll() is not None and "exited")

    try:
        # `ray start` gives a raylet 30 s to register (a constant in ray/_private/node.py); on a
        # loaded machine it can miss that: a node that gave up is started again, three times at most.
        for attempt in range(3):
            # Its own temp folder: its session files, and its address (which `ray.init()` without an
            # address would try to join), stay out of /tmp/ray.
            head_log = start(f"head-{attempt}", "--head", f"--port={free_port()}", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={logs / 'ray'}")
            found = _wait_for(started_or_exited(started[-1], lambda: (m := re.search(
                r"ray start --address='([^']+)'", head_log.read_text())) and m.group(1)),
                240, "the Ray head did not start", [head_log])
            if found != "exited":
                address = found
                break
        else:
            raise RuntimeError("the Ray head gave up three times:\n" + head_log.read_text()[-3000:])
        for attempt in range(3):
            worker_log = start(f"worker-{attempt}", f"--address={address}")
            if _wait_for(started_or_exited(started[-1], lambda: two_nodes(address)), 240,
                         "the worker node did not join", [head_log, worker_log]) is True:
                break
        else:
            raise RuntimeError("the worker node gave up three times:\n" + worker_log.read_text()[-3000:])
        yield Cluster(address, env)
    finally:
        for process in reversed(started):   # worker first, then the head
            _stop_group(process)
        shutil.rmtree(logs, ignore_errors=True)


def _stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)   # raylet, workers and all: everything this `ray start` began
    except ProcessLookupError:
        pass
    process.wait(30)


def span_scan(*arguments, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spancli", "scan", *map(str, arguments)], cwd=ROOT,
                          env={**(env or os.environ), **SCAN_ENV}, capture_output=True, text=True, timeout=timeout)


def items(out: Path) -> dict[str, dict]:
    return {row["name"] or row["path"]: row for row in json.loads((out / "summary.json").read_text())["items"]}


def make_folder(root: Path) -> Path:
    folder = root / "case"
    photos = {
        "Canon_40D.jpg": "Canon_40D.jpg",
        "Nikon_D70.jpg": "Nikon_D70.jpg",
        "Nikon_D70.png": "Pentax_K10D.jpg",   # same stem beside it, another photo (the bytes say JPEG)
        "a/Kodak_CX7530.jpg": "Kodak_CX7530.jpg",
        "a/b/Canon_40D.jpg": "Fujifilm_FinePix_E500.jpg",   # same name, deeper, other photo
        "a/b/Sony_HDR-HC3.jpg": "Sony_HDR-HC3.jpg",
    }
    for name, source in photos.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXIF / source, folder / name)
    (folder / "broken.jpg").write_bytes((EXIF / "Canon_PowerShot_S40.jpg").read_bytes()[:6000])   # cut short
    (folder / "a" / "notes.jpg").write_text("a text file with a photo's name")
    return folder


def test_ray_scan_gives_what_the_local_scan_gives(ray_cluster, tmp_path):
    folder = make_folder(tmp_path)
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    # --layers runs in the actors, through the same per-file function as the local scan.
    local = span_scan(folder, "--out", local_out, "--layers", "ela,metadata", env=ray_cluster.env)
    remote = span_scan(folder, "--ray", ray_cluster.address, "--out", ray_out, "--actors", "2",
                       "--threads-per-actor", "1", "--layers", "ela,metadata", env=ray_cluster.env)
    assert local.returncode == 1, local.stderr   # the two bad files fail, the scan says so
    assert remote.returncode == 1, remote.stderr
    assert "2 actor(s) x 1 thread(s)" in remote.stderr

    mine, theirs = items(ray_out), items(local_out)
    assert sorted(mine) == sorted(theirs) and len(mine) == 8
    for name, row in theirs.items():
        got = mine[name]
        assert (got["status"], got["error_code"]) == (row["status"], row["error_code"]), name
        assert (got["heatmap"], got["overlay"], got["width"], got["height"]) == (
            row["heatmap"], row["overlay"], row["width"], row["height"])
        if row["status"] != "ok":
            continue
        assert got["score"] == pytest.approx(row["score"], abs=1e-5)
        assert got["tampered_fraction"] == pytest.approx(row["tampered_fraction"], abs=1e-5)
        record, reference = (json.loads((out / f"{name}.result.json").read_text()) for out in (ray_out, local_out))
        assert record["input_sha256"] == reference["input_sha256"]
        assert record["model"] == reference["model"]
        a, b = (np.asarray(Image.open(out / row["heatmap"]), dtype=int) for out in (ray_out, local_out))
        assert np.abs(a - b).max() <= 1   # one 8-bit step at most (thread counts differ)
        assert {k: got["layers"][k]["summary"] for k in ("ela", "metadata")} == {
            k: row["layers"][k]["summary"] for k in ("ela", "metadata")}
        assert got["ela_bright_fraction"] == row["ela_bright_fraction"]
        ela = [(out / f"{name}.ela.png").read_bytes() for out in (ray_out, local_out)]
        assert ela[0] == ela[1]   # the layers need no model: the same map, byte for byte
    assert (mine["broken.jpg"]["error_code"], mine["a/notes.jpg"]["error_code"]) == ("corrupt_image", "unsupported_format")
    summary = json.loads((ray_out / "summary.json").read_text())
    assert summary["backend"].startswith("Ray (") and summary["root"] == str(folder.absolute())

    # Resumable: a second run skips what is done (by photo and model digest, and with the layers
    # asked for, a subset here) and retries the failures.
    again = span_scan(folder, "--ray", ray_cluster.address, "--out", ray_out, "--layers", "ela", env=ray_cluster.env)
    assert again.returncode == 1, again.stderr
    rows = items(ray_out)
    assert {n: r["status"] for n, r in rows.items() if r["error_code"] is None} == dict.fromkeys(
        [n for n in theirs if theirs[n]["status"] == "ok"], "skipped")
    assert json.loads((ray_out / "summary.json").read_text())["this_run"] == {"ok": 0, "skipped": 6, "failed": 2}


def _actor_processes():
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "MapBatches(Analyser)" in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_a_killed_actor_costs_nothing(ray_cluster, tmp_path):
    folder, out = tmp_path / "many", tmp_path / "out"
    folder.mkdir()
    photo = EXIF / "Canon_PowerShot_S40.jpg"   # 480x360: long enough per image to be caught mid-scan
    for index in range(24):
        shutil.copy(photo, folder / f"p{index:02d}.jpg")
    scan = subprocess.Popen([sys.executable, "-m", "spancli", "scan", str(folder), "--ray", ray_cluster.address,
                             "--out", str(out), "--actors", "2", "--threads-per-actor", "1"],
                            cwd=ROOT, env={**ray_cluster.env, **SCAN_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*.result.json")) and scan.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        victims = _actor_processes()
        done_at_kill = len(list(out.glob("*.result.json")))
        assert victims and scan.poll() is None, "the scan ended before an actor could be killed"
        victims[0].send_signal(signal.SIGKILL)
        output, _ = scan.communicate(timeout=600)
    finally:
        scan.kill()
    assert done_at_kill < 24
    assert scan.returncode == 0, output
    written = json.loads((out / "summary.json").read_text())
    names = [row["name"] for row in written["items"]]
    assert sorted(names) == [f"p{index:02d}.jpg" for index in range(24)]   # every file, exactly once
    assert {row["status"] for row in written["items"]} == {"ok"}
    assert len({row["score"] for row in written["items"]}) == 1   # one photo, one score, whoever ran it
    for row in written["items"]:
        assert (out / row["heatmap"]).is_file() and (out / row["overlay"]).is_file()
    assert not list(out.rglob("*.part"))


def test_uris_are_named_like_local_paths(tmp_path):
    folder = make_folder(tmp_path)
    local, local_root = collect_inputs([str(folder)])
    uris, uri_root = collect_sources([folder.absolute().as_uri()], tmp_path / "out", None)
    assert [i.key for i in uris] == [i.key for i in local]
    assert uri_root == folder.absolute().as_uri() and local_root == str(folder.absolute())
    with pytest.raises(Exception, match="either local paths or URIs"):
        collect_sources([folder.as_uri(), str(folder)], tmp_path / "out", None)


def test_manifest_csv_lists_the_inputs(tmp_path):
    folder = make_folder(tmp_path)
    manifest = folder / "manifest.csv"
    manifest.write_text("path,label\nCanon_40D.jpg,x\na/b/Canon_40D.jpg,y\nmissing.jpg,z\n")
    inputs, root = collect_sources([str(manifest)], tmp_path / "out", None)
    assert root == str(folder.absolute())
    assert [i.key for i in inputs if i.error is None] == ["Canon_40D.jpg", "a/b/Canon_40D.jpg"]
    assert [Path(i.path).name for i in inputs if i.error] == ["missing.jpg"]


def test_pool_defaults_follow_the_cluster():
    one_core_nodes = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert plan_pool({"CPU": 2.0}, one_core_nodes, RayOptions()) == (2, 1, 0.0)
    assert plan_pool({"CPU": 32.0}, [{"CPU": 16.0}] * 2, RayOptions()) == (16, 2, 0.0)
    assert plan_pool({"CPU": 32.0, "GPU": 4.0}, [{"CPU": 16.0, "GPU": 2.0}] * 2, RayOptions()) == (4, 2, 1.0)
    assert plan_pool({"CPU": 32.0}, [{"CPU": 16.0}] * 2, RayOptions(actors=3, threads_per_actor=4)) == (3, 4, 0.0)


def test_ray_flag_takes_an_optional_address():
    assert ray_address_optional(["scan", "x", "--ray", "--out", "o"]) == ["scan", "x", "--ray", "local", "--out", "o"]
    assert ray_address_optional(["scan", "x", "--out", "o", "--ray"])[-1] == "local"
    assert ray_address_optional(["scan", "x", "--ray", "auto", "--out", "o"]).count("local") == 0


def test_an_unreachable_cluster_fails_at_once_with_one_line(tmp_path):
    folder = make_folder(tmp_path)
    result = span_scan(folder, "--ray", f"127.0.0.1:{free_port()}", "--out", tmp_path / "out", timeout=120)
    assert result.returncode == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:" in result.stderr
