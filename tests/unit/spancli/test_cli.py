"""spancli: one command line above both halves. Commands whose extra is missing say so in one
line and exit 2 (as in the runtime-only venv `make serve` builds, simulated here by hiding torch)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from spancore.testing import ROOT

# Hides the train extra from this interpreter: find_spec answers None, import raises.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "


def _span_without_torch(*args: str) -> subprocess.CompletedProcess:
    code = WITHOUT_TORCH + f"from spancli.main import app; app({list(args)!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ("train", "--config", "models/configs/cpu-small.json"),
    ("export", "--out", "/nonexistent/never-written"),
])
def test_a_missing_train_extra_is_one_line_and_exit_2(args):
    done = _span_without_torch(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "make install-dev" in lines[0] and lines[0].startswith(f"span {args[0]}: ")
    assert "Traceback" not in done.stderr


def test_every_job_is_a_command_of_span():
    done = subprocess.run([sys.executable, "-m", "spancli", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for command in ("serve", "scan", "evaluate", "export", "train", "bench"):
        assert command in done.stdout


def test_no_half_imports_the_other_and_nothing_edits_sys_path():
    """models/ and service/ meet only in spancore/; product code never imports tests/ or edits sys.path."""
    import re

    def imports(package: str) -> set[str]:
        found = set()
        for path in (ROOT / package).rglob("*.py"):
            found |= set(re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M))
        return found

    assert "service" not in imports("models") and "models" not in imports("service")
    assert not {"service", "models", "spancli", "bench"} & imports("spancore")
    for package in ("spancore", "models", "service", "spancli", "bench"):
        assert not {"tests", "support"} & imports(package), package
        for path in (ROOT / package).rglob("*.py"):
            assert "sys.path.insert" not in path.read_text() and "sys.path.append" not in path.read_text(), path


@pytest.mark.parametrize("args", [
    ("serve", "--port", "8019"),
    ("evaluate", "../shared/data/benchmarks/dev/manifest.csv", "--limit", "1"),
    ("scan", "tests", "--out", "/nonexistent/never-written"),
])
def test_a_bad_span_setting_is_one_line_naming_the_variable(args):
    """A SPAN_* value the service cannot run with stops each command before it starts, in one
    line that names the variable, the value and what is wrong; a check across fields likewise."""
    import os

    env = {**os.environ, "SPAN_THRESHOLD": "2", "SPAN_RELATIVE_CUT": "abc"}
    done = subprocess.run([sys.executable, "-m", "spancli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"span {args[0]}: "), done.stderr
    assert "SPAN_THRESHOLD=2: Input should be less than or equal to 1" in lines[0]
    assert "SPAN_RELATIVE_CUT=abc" in lines[0] and "Traceback" not in done.stderr


def test_a_bad_combination_of_settings_is_one_line_too():
    import os

    env = {**os.environ, "SPAN_TILE_SIZE": "100", "SPAN_TILE_OVERLAP": "60"}
    done = subprocess.run([sys.executable, "-m", "spancli", "serve", "--port", "8019"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and done.stderr.strip() == "span serve: tile_overlap must be less than half of tile_size"
