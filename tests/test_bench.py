"""`span bench` end to end on a tiny model: every row and column of the table, the FLOP count,
the doc rewrite, and the saved-graph lever. No timing assertions (speed is what bench prints)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench/ is a source-tree package, not installed

pytest.importorskip("torch")  # the torch-eager rows and the tiny export need the train extra

from bench.bench import BEGIN, END, MAIN_COLUMNS, render, write_doc  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A SPAN with a few narrow layers and a 16x16 grid: the same graph, milliseconds per image."""
    from models.export import export_weights
    from models.span import SpanConfig

    config = SpanConfig(name="tiny", featex_blocks=((8,), (8,)), featex_pool=(True, True), featex_dim=16,
                        grid=(16, 16), attention_dim=8, dilations=(1, 3), head_widths=(8, 4))
    folder = tmp_path_factory.mktemp("tiny-weights")
    export_weights(folder, config=config, parity_shapes=((1, 17, 9),))
    return folder


def test_bench_command_writes_every_row_and_column(tiny_model, tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nProse before.\n\n{BEGIN}\nold figures\n{END}\n\nProse after.\n")
    raw = tmp_path / "bench.json"
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "--size", "96x64", "--repeats", "1", "--requests", "1",
         "--model-dir", str(tiny_model), "--no-levers", "--out", str(doc), "--json", str(raw)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = doc.read_text()
    assert text.startswith("# Performance\n\nProse before.") and text.rstrip().endswith("Prose after.")
    assert "old figures" not in text and text.count(BEGIN) == 1 and text.count(END) == 1

    header = "| " + " | ".join(MAIN_COLUMNS) + " |"
    assert header in text
    table = text.split(header, 1)[1].split("\n\n", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    paths = [(r[1], r[2]) for r in rows]
    assert paths == [("torch eager", "—"), ("ORT engine", "—"), ("HTTP", "1"), ("HTTP", "4"), ("HTTP", "16")]
    for row in rows:
        assert len(row) == len(MAIN_COLUMNS)
        assert "error" not in row[3] and "failed" not in row[3], row
        assert all(cell for cell in row), row  # images/s, p50, p95, peak RSS, n, load all filled
        assert float(row[3]) > 0 and row[6].endswith(("MiB", "GiB"))

    results = json.loads(raw.read_text())
    assert results["model"]["preset"] == "tiny"
    assert "ORT engine ≥ 1.5× faster than torch eager" in text
    assert "### Work per image and share of the machine's peak" in text
    assert results["peak"]["gflops"] > 0
    assert results["profile"]["macs"]["64x96"] > 0 and sum(results["profile"]["breakdown_s"].values()) > 0
    # A re-render of the saved figures gives the same block (the doc is a pure function of them).
    assert render(results) in text


def test_saved_optimised_graph_loads_and_runs(tiny_model):
    from bench.levers import cached_graph_table

    table = cached_graph_table(tiny_model / "span.onnx", [48, 64], repeats=1, progress=lambda line: None)
    assert [r[0] for r in table["rows"]] == ["optimise at start (shipped)", "optimise at start and save the optimised graph",
                                             "load the saved graph, optimisation disabled"]
    assert all(not r[1].startswith("error") for r in table["rows"]), table["rows"]


def test_write_doc_creates_a_missing_file(tmp_path):
    doc = tmp_path / "new" / "perf.md"
    write_doc(doc, "| a |\n")
    assert doc.read_text() == f"# Performance\n\n{BEGIN}\n| a |\n{END}\n"
