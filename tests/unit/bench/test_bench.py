"""`span bench` end to end on a tiny model: every row and column of the table, the FLOP count,
the doc rewrite, and the saved-graph lever. No timing assertions (speed is what bench prints)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

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
        [sys.executable, "-m", "spancli", "bench", "--size", "96x64", "--repeats", "1", "--requests", "1",
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
    assert paths == [("torch eager", "—"), ("ORT engine (fp32)", "—"), ("HTTP", "1"), ("HTTP", "4"), ("HTTP", "16")]
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


def test_write_doc_appends_a_block_to_a_file_without_one(tmp_path):
    doc = tmp_path / "perf.md"
    doc.write_text("# Performance\n\nCPU figures stay.\n")
    write_doc(doc, "gpu table\n", markers=("<!-- g:begin -->", "<!-- g:end -->"))
    write_doc(doc, "gpu table, again\n", markers=("<!-- g:begin -->", "<!-- g:end -->"))
    assert doc.read_text() == "# Performance\n\nCPU figures stay.\n\n<!-- g:begin -->\ngpu table, again\n<!-- g:end -->\n"


def test_gpu_code_paths_run_on_cpu(tiny_model):
    """bench/gpu.py's torch, ORT IO-binding and engine-batcher paths, on the CPU provider."""
    from bench.gpu import engine_row, ort_rows, render, torch_rows

    shape = (48, 64)
    rows = torch_rows(tiny_model, "cpu", shape, [1, 2], 1)
    rows += ort_rows(tiny_model, "cpu", shape, [1, 2], 1)
    rows.append(engine_row(tiny_model, "cpu", shape, images=6, max_batch=4))
    assert [(r["path"].split(" (")[0], r["batch"]) for r in rows] == [
        ("torch eager fp32", 1), ("torch eager fp32", 2), ("ORT fp32", 1), ("ORT fp32", 2),
        ("service.engine, dynamic batching ≤ 4", "dynamic")]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert "| ORT fp32 (CPUExecutionProvider, IO binding) | 2 |" in render(rows, "cpu", shape)


def test_fp16_conversion_keeps_the_float32_contract(tiny_model, tmp_path):
    """The GPU fp16 model: float32 in and out, fp16 weights inside, maps close to fp32 (run on CPU here)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from bench.gpu import fp16_model

    path = fp16_model(tiny_model / "span.onnx", tmp_path / "span.fp16.onnx")
    model = onnx.load(str(path))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    image = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32) * 255
    half = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
    full = ort.InferenceSession(str(tiny_model / "span.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"image": image})[0]
    assert half.dtype == np.float32 and half.shape == full.shape == (1, 1, 48, 64)
    assert np.abs(half - full).max() < 1e-2
