"""The shipped install path: Dockerfile -> Makefile -> pyproject, and a runtime without torch.

Docker cannot run on the CI machines, so the Dockerfile is kept to the Makefile's own
targets and this file exercises those targets for real.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dockerfile_commands() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    text = text.replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if re.match(r"\s*(RUN|CMD)\b", line)]


def test_dockerfile_installs_and_serves_through_the_makefile():
    commands = _dockerfile_commands()
    assert any("make install" in c for c in commands if c.startswith("RUN")), commands
    assert any("make" in c and "serve" in c for c in commands if c.startswith("CMD")), commands
    # Every make target the Dockerfile names must exist in the Makefile.
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    for command in commands:
        for segment in re.split(r"&&|;|\[|\]|\"|,", command):
            words = segment.split()
            if words[:1] == ["exec"]:
                words = words[1:]
            if words[:1] != ["make"]:
                continue
            for target in (w for w in words[1:] if not w.startswith("-") and "=" not in w):
                assert target in targets, f"Dockerfile calls `make {target}`, which the Makefile lacks"
    text = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and "/health/ready" in text
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "/health/ready" in compose and "VARIANT: gpu" in compose


def test_runtime_dependencies_stay_lean():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "opencv", "matplotlib", "scikit", "tensorflow"):
        assert heavy not in runtime, f"{heavy} must not be a runtime dependency"
    assert "onnxruntime-gpu" in runtime
    assert "torch==2.13.0" in project["optional-dependencies"]["train"]
    assert project["scripts"]["span"] == "spancli.main:app"


def test_runtime_install_serves_without_torch(tmp_path):
    """`make install` into an empty venv (the Docker path) gives a working `span` and a
    service whose every module imports without torch being installed at all."""
    venv = tmp_path / "venv"
    subprocess.run(
        ["make", "--no-print-directory", "install", f"VENV={venv}", f"PYTHON={sys.executable}"],
        cwd=ROOT, check=True, capture_output=True, timeout=900,
    )
    python = venv / "bin" / "python"
    probe = (
        "import importlib, pkgutil, sys, service, spancore, spancli\n"
        "for package in (service, spancore, spancli):\n"
        "    for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        if m.name != 'spancli.__main__':\n"
        "            importlib.import_module(m.name)\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is installed in the runtime venv'\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    help_text = subprocess.run([venv / "bin" / "span", "--help"], capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0, help_text.stderr
    # The torch-side commands say in one line what to install, instead of a traceback.
    for command in (["train", "--config", str(ROOT / "models" / "configs" / "cpu-small.json")],
                    ["export", "--out", str(tmp_path / "never-written")]):
        refused = subprocess.run([venv / "bin" / "span", *command], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [refused.stderr.strip()] and "make install-dev" in refused.stderr
    assert not (tmp_path / "never-written").exists()
