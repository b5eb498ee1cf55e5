"""Shared test helpers: where the shared data lives, and a real `span serve` process.

Part of the package so that tests/ and bench/ share it without importing each other.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
EXIF_SAMPLES = SHARED_DATA / "photos" / "exif-samples"

# The session server's settings: the defaults of `make serve`, except a small upload limit
# (so an oversized upload is cheap to send) and a small working size (so test photos are quick).
TEST_SERVER_ENV = {
    "SPAN_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
    "SPAN_MAX_WORKING_PIXELS": str(256 * 256),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in time; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@contextmanager
def running_server(
    env: dict[str, str] | None = None, ready_timeout: float = 180, wait_for: str = "/health/ready"
) -> Iterator[ServerProcess]:
    """Start `python -m spancli serve` on a free port, wait until `wait_for` answers 200
    (/health/live: as soon as the process listens), stop it (SIGTERM) after."""
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="span-serve-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "spancli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, Path(log_file.name))
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"span serve exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(server.url + wait_for, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"span serve: no 200 from {wait_for} after {ready_timeout} s:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.terminate()
        log_file.close()
