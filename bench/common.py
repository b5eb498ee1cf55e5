"""What every benchmark shares: the test photos, latency statistics, memory probes, the machine.

Each measured row runs in a fresh child process (`run_child`), so its peak RSS is that row's
own (the kernel's high-water mark of the child) and not the leftovers of the rows before it.
"""
from __future__ import annotations

import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Size:
    label: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# The sizes of issue 6, plus 50 MP for the memory target. 4000 x 3000 is a 12 MP camera frame.
SIZES = {
    "512x512": Size("512×512", 512, 512),
    "1024x768": Size("1024×768", 1024, 768),
    "12mp": Size("12 MP (4000×3000)", 4000, 3000),
    "50mp": Size("50 MP (8192×6144)", 8192, 6144),
}

# Real photos (../shared/data): a street scene for the small sizes, a 3264x2448 phone photo
# upscaled for 12 and 50 MP (no 12 MP photo with clean metadata is in the shared set).
_SMALL_SOURCE = "photos/urban100/img_002.jpg"  # 1024x768 as shipped
_LARGE_SOURCE = "photos/exif-samples/jpg/hdr/iphone_hdr_NO.jpg"


def test_photo(size: Size, quality: int = 90) -> bytes:
    """A real photo at exactly `size`, as a baseline JPEG (synthetic texture if the shared data is absent)."""
    source = SHARED_DATA / (_SMALL_SOURCE if size.pixels <= 1024 * 1024 else _LARGE_SOURCE)
    if source.is_file():
        image = Image.open(source).convert("RGB")
        # Centre crop to the aspect ratio, then resize: real texture at the requested size.
        ratio = size.width / size.height
        w, h = image.size
        cw, ch = (w, round(w / ratio)) if w / h < ratio else (round(h * ratio), h)
        left, top = (w - cw) // 2, (h - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))
        if image.size != (size.width, size.height):
            image = image.resize((size.width, size.height), Image.Resampling.LANCZOS)
    else:
        rng = np.random.default_rng(size.pixels)
        y, x = np.mgrid[0 : size.height, 0 : size.width]
        base = (np.sin(x / 37.0)[..., None] + np.cos(y / 53.0)[..., None]) * 60 + 128
        noise = rng.normal(0, 12, (size.height, size.width, 3))
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def write_photos(keys: list[str], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in keys:
        path = folder / f"{key}.jpg"
        if not path.is_file():
            path.write_bytes(test_photo(SIZES[key]))
        paths[key] = path
    return paths


# ---------------------------------------------------------------------------- statistics
def summarise(latencies_s: list[float], wall_s: float | None = None, images: int | None = None) -> dict:
    """p50/p95/mean in seconds and images/s (images over wall time; sequential: over the sum)."""
    values = np.asarray(latencies_s, dtype=np.float64)
    wall = float(values.sum()) if wall_s is None else wall_s
    count = len(values) if images is None else images
    return {
        "n": int(len(values)),
        "p50_s": float(np.percentile(values, 50)),
        "p95_s": float(np.percentile(values, 95)),
        "mean_s": float(values.mean()),
        "images_per_s": count / wall if wall > 0 else float("nan"),
    }


def timed_loop(step, repeats: int, max_seconds: float, min_repeats: int = 3) -> list[float]:
    """Run `step()` `repeats` times, stopping early once `max_seconds` passed and `min_repeats` ran."""
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < repeats:
        t0 = time.perf_counter()
        step()
        latencies.append(time.perf_counter() - t0)
        if len(latencies) >= min_repeats and time.perf_counter() - started > max_seconds:
            break
    return latencies


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fmt_bytes(value: int | None) -> str:
    if not value:
        return "—"
    return f"{value / GiB:.2f} GiB" if value >= GiB else f"{value / MiB:.0f} MiB"


def error_cells(result: dict, width: int) -> list[str]:
    """Table cells for a row whose child failed: the error first, blanks after."""
    return ["error: " + result["error"][:120].replace("|", "/").replace("\n", " ")] + [""] * (width - 1)


# ---------------------------------------------------------------------------- memory
def own_peak_rss() -> int:
    """This process's peak resident set size in bytes. VmHWM, not ru_maxrss: a child started by a
    large parent inherits the parent's ru_maxrss across fork and exec."""
    try:
        return _status_field(os.getpid(), "VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def own_rss() -> int:
    return _status_field(os.getpid(), "VmRSS")


def peak_rss_of(pid: int) -> int:
    """Peak RSS (VmHWM) of another process, in bytes."""
    return _status_field(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


# ---------------------------------------------------------------------------- child processes
def run_child(module: str, task: dict, timeout: float = 1800) -> dict:
    """Run `python -m <module> '<task json>'` from the repo root; the child prints one JSON line last."""
    completed = subprocess.run(
        [sys.executable, "-m", module, json.dumps(task)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout)[-3000:]
        return {"error": f"{module} {task.get('kind')} exited {completed.returncode}: {tail.strip()}"}
    return json.loads(lines[-1])


def child_main(handlers: dict) -> None:
    """Entry point of a child: argv[1] is the task JSON; print the handler's result as JSON."""
    task = json.loads(sys.argv[1])
    result = handlers[task["kind"]](task)
    result.setdefault("peak_rss", own_peak_rss())
    result.setdefault("load", os.getloadavg()[0])
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- the machine
def machine() -> dict:
    """CPU model, cores, memory, versions, commit: the header of every table."""
    info = {"python": platform.python_version(), "logical_cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(re.findall(r"^([^:\n]+):\s+(.*)$", lscpu, re.M))
        info["cpu"] = fields.get("Model name", "?")
        info["cores"] = int(fields.get("Core(s) per socket", 0)) * int(fields.get("Socket(s)", 1))
        info["threads_per_core"] = int(fields.get("Thread(s) per core", 1))
        flags = fields.get("Flags", "").split()
        info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16") if f in flags)
        info["hypervisor"] = fields.get("Hypervisor vendor")
        # Paper fp32 peak: 32 FLOP/cycle/core (two 256-bit FMA pipes; Zen 4 runs AVX-512 on them
        # double-pumped) at the base clock (lscpu's "CPU max MHz" when the guest sees it, else BogoMIPS/2).
        mhz = float(fields.get("CPU max MHz") or float(fields.get("BogoMIPS", 0)) / 2)
        if "fma" in flags and mhz:
            info["paper_peak_gflops"] = info["cores"] * 32 * mhz / 1000
    except (OSError, subprocess.CalledProcessError):
        info["cpu"] = platform.processor() or "?"
    try:
        info["memory_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    except (ValueError, OSError):
        pass
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    info["numpy"] = np.__version__
    info["commit"] = _git("rev-parse", "--short=12", "HEAD")
    info["dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "service", "models", "bench", "weights"))
    return info


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
