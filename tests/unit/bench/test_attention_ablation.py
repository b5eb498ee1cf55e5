"""bench/attention_ablation.py's table from its two JSON phases (no training or timing here:
the figures are what the script measures; this checks how they are reported)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spancore.testing import ROOT

pytest.importorskip("torch")

from bench.attention_ablation import spread, summarise, write_markdown  # noqa: E402

NOTICE = "UserWarning: Constant folding - Only steps=1"


def _scores(a: float, b: float) -> dict:
    return {"0": summarise({"casia2": [a], "noso": [a]}), "1": summarise({"casia2": [b], "noso": [b]})}


def test_table_reports_seed_spread_cost_ratio_and_export_notes(tmp_path):
    accuracy = {
        "base": "weights/span.pt", "architecture": "slim", "grid": [32, 32], "grid_reduced": True, "samples": 2,
        "seeds": [0, 1], "manifest": "dev/manifest.csv", "max_pixels": 250000, "names": ["pixel", "eca", "contextual"],
        "scores": {"pixel": _scores(0.6, 0.7), "eca": _scores(0.5, 0.55), "contextual": _scores(0.62, 0.64)},
        "params": {}, "train_cpu_seconds_per_sample": {"pixel": [4.0, 6.0], "eca": [1.0, 1.0], "contextual": [2.0, 2.0]},
        "load_average_end": 12.0, "minutes": 30.0,
    }
    block = {"wall_ms": 900.0, "parity": 1e-7, "attention": 10, "trained": 100}
    cost = {"architecture": "slim", "grid": [224, 224], "threads": 2, "repeats": 2, "load_average_end": 12.0,
            "minutes": 10.0, "blocks": {
                "pixel": {**block, "cpu_ms": 1000.0, "notes": [NOTICE]},
                "eca": {**block, "cpu_ms": 800.0, "notes": [NOTICE]},
                "contextual": {**block, "cpu_ms": 1500.0, "notes": [NOTICE, "ops in domain org.pytorch.aten"]}}}
    out = tmp_path / "ablation.md"
    write_markdown(accuracy, cost, out, ["No winner."])
    rows = {line.split(" | ")[0].strip("| "): line for line in out.read_text().splitlines() if line.startswith("| ")}
    assert "0.650 (0.600-0.700)" in rows["pixel"]  # mean over seeds (lowest-highest)
    assert "1000 (1.00×)" in rows["pixel"] and "800 (0.80×)" in rows["eca"] and "1500 (1.50×)" in rows["contextual"]
    assert "as pixel" in rows["eca"] and "ops in domain org.pytorch.aten" in rows["contextual"]
    assert "--grid 32" in out.read_text() and "No winner." in out.read_text()


def test_table_without_the_accuracy_phase_says_so(tmp_path):
    cost = {"architecture": "slim", "grid": [224, 224], "threads": 2, "repeats": 1, "load_average_end": 1.0,
            "minutes": 1.0, "blocks": {"pixel": {"wall_ms": 1.0, "cpu_ms": 2.0, "parity": 0.0, "notes": [],
                                                 "attention": 1, "trained": 2}}}
    out = tmp_path / "ablation.md"
    write_markdown(None, cost, out, [])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| pixel"))
    assert "n/a" in row and "clean" in row
    assert spread([]) == "n/a" and spread([0.5]) == "0.500"
