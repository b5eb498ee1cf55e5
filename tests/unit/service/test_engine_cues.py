"""service.engine with a model that takes spancore's cues as its second input, and the
manifest's operating point as the default decision threshold.

A probe model answers, at every pixel, the mean of the cue tensor it was given, so each test
can say exactly which cues the engine computed and from which pixels.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.analysis import analyze_bytes
from service.engine import Engine, EngineError, _starts
from service.settings import Settings
from spancore.cues import CUE_NAMES, CUES_VERSION, compute_cues

onnx = pytest.importorskip("onnx")


def _write_cue_probe(directory: Path, *, manifest_cues: dict | None | str = "default",
                     threshold: float | None = None) -> Path:
    """heatmap[n, 0, y, x] = mean(cues[n]) (+ 0 * image, so the map has the image's size)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["red"]),
        helper.make_node("Mul", ["red", "zero"], ["zeros"]),
        helper.make_node("ReduceMean", ["cues"], ["level"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Add", ["zeros", "level"], ["heatmap"]),
    ]
    graph = helper.make_graph(
        nodes, "cue-probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"]),
         helper.make_tensor_value_info("cues", TensorProto.FLOAT, ["batch", len(CUE_NAMES), "rows", "cols"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [numpy_helper.from_array(np.array([0], np.int64), "starts"),
         numpy_helper.from_array(np.array([1], np.int64), "ends"),
         numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "span.onnx")
    data = (directory / "span.onnx").read_bytes()
    manifest = {
        "name": "cue-probe", "version": "test", "trained": False, "status": "TEST PROBE: mean of the cues",
        "input": {"name": "image"}, "output": {"name": "heatmap"},
        "files": {"span.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    if manifest_cues == "default":
        manifest_cues = {"name": "cues", "version": CUES_VERSION, "channels": list(CUE_NAMES), "block": 8}
    if manifest_cues is not None:
        manifest["cues"] = manifest_cues
    if threshold is not None:
        manifest["threshold"] = threshold
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise, JPEG-compressed: cues with structure, not constants."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=2)
    rgb = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=80)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _engine(directory: Path, **overrides) -> Engine:
    return Engine.from_settings(Settings(model_dir=directory, providers=["CPUExecutionProvider"], **overrides))


def test_resize_policy_reads_the_cues_at_native_resolution(tmp_path):
    engine = _engine(_write_cue_probe(tmp_path), large_image_policy="resize", max_working_pixels=64 * 64)
    try:
        rgb = _photo(200, 300)
        heatmap = engine.predict(rgb)
        assert heatmap.shape == (200, 300)
        expected = compute_cues(rgb).mean(dtype=np.float32)
        np.testing.assert_allclose(heatmap, expected, atol=1e-5)
        resized = np.asarray(Image.fromarray(rgb).resize((78, 52), Image.Resampling.BILINEAR))
        assert abs(float(heatmap.mean()) - float(compute_cues(resized).mean())) > 1e-3
    finally:
        engine.close(5)


def test_tiles_start_on_the_grid_and_take_their_slice_of_the_cues(tmp_path):
    engine = _engine(_write_cue_probe(tmp_path), large_image_policy="tile", tile_size=128, tile_overlap=32)
    try:
        rgb = _photo(203, 301)
        plan = engine.plan(rgb)
        assert plan.origins and all(y % 8 == 0 and x % 8 == 0 for y, x in plan.origins)
        cues = compute_cues(rgb)
        for (y, x), tile_cues in zip(plan.origins, plan.inputs["cues"], strict=True):
            np.testing.assert_array_equal(tile_cues, cues[:, y // 8 : y // 8 + 16, x // 8 : x // 8 + 16])
        heatmap = engine.predict(rgb)
        assert heatmap.shape == (203, 301)
        first = cues[:, :16, :16].mean(dtype=np.float32)  # only the first tile covers the top-left corner
        np.testing.assert_allclose(heatmap[:50, :50], first, atol=1e-5)
        assert np.isfinite(heatmap).all()
    finally:
        engine.close(5)


@pytest.mark.parametrize("length,tile,overlap", [(301, 128, 32), (203, 128, 32), (1000, 512, 64), (129, 128, 0)])
def test_aligned_tile_starts_cover_all_but_the_last_few_pixels(length, tile, overlap):
    starts = _starts(length, tile, overlap, align=8)
    assert starts[0] == 0 and all(s % 8 == 0 for s in starts)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    assert length - 8 < starts[-1] + tile <= length


def test_batched_requests_carry_their_own_cues(tmp_path):
    engine = _engine(_write_cue_probe(tmp_path), max_queue_delay_ms=100, max_batch_size=4)
    try:
        photos = [_photo(64, 96, seed) for seed in range(3)]

        async def all_at_once():
            return await asyncio.gather(*(engine.submit(rgb) for rgb in photos))

        for rgb, heatmap in zip(photos, asyncio.run(all_at_once()), strict=True):
            np.testing.assert_allclose(heatmap, compute_cues(rgb).mean(dtype=np.float32), atol=1e-5)
    finally:
        engine.close(5)


def test_a_cue_model_without_the_cue_contract_is_refused(tmp_path):
    with pytest.raises(EngineError, match="contract"):
        _engine(_write_cue_probe(tmp_path, manifest_cues=None))


def test_cues_of_another_version_are_refused(tmp_path):
    with pytest.raises(EngineError, match="cues"):
        _engine(_write_cue_probe(tmp_path, manifest_cues={"name": "cues", "version": "block8-v0"}))


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("setting,expected", [(None, 0.5), (0.0, 0.0)])
def test_the_manifest_relative_cut_is_the_default_and_a_setting_overrides_it(tmp_path, setting, expected):
    """The plumbing (manifest -> engine -> answer); the rule itself: tests/unit/spancore/test_scoring.py."""
    directory = _write_cue_probe(tmp_path, threshold=0.0)
    manifest = json.loads((directory / "manifest.json").read_text())
    (directory / "manifest.json").write_text(json.dumps({**manifest, "relative_cut": 0.5}))
    settings = Settings(model_dir=directory, providers=["CPUExecutionProvider"], relative_cut=setting)
    engine = Engine.from_settings(settings)
    try:
        analysis = analyze_bytes(_jpeg_bytes(_photo(64, 64)), engine, settings)
        assert analysis.relative_cut == expected and analysis.as_json(include_heatmap=False)["relative_cut"] == expected
        heatmap = analysis.heatmap
        assert analysis.tampered_fraction == pytest.approx(float(np.mean(heatmap >= expected * heatmap.max())))
    finally:
        engine.close(5)


@pytest.mark.parametrize("manifest_value,setting,threshold,expected", [
    (0.45, None, None, 0.45),   # the model's own image threshold
    (0.45, 0.8, None, 0.8),     # SPAN_IMAGE_THRESHOLD overrides it
    (None, None, None, 0.37),   # a model without one: the pixel decision's threshold...
    (None, None, 0.6, 0.6),     # ...including SPAN_THRESHOLD, as before the two were apart
])
def test_the_image_decision_has_its_own_threshold(tmp_path, manifest_value, setting, threshold, expected):
    directory = _write_cue_probe(tmp_path, threshold=0.37)
    if manifest_value is not None:
        manifest = json.loads((directory / "manifest.json").read_text())
        (directory / "manifest.json").write_text(json.dumps({**manifest, "image_threshold": manifest_value}))
    settings = Settings(model_dir=directory, providers=["CPUExecutionProvider"], image_threshold=setting,
                        threshold=threshold)
    engine = Engine.from_settings(settings)
    try:
        analysis = analyze_bytes(_jpeg_bytes(_photo(64, 64)), engine, settings)
        assert analysis.image_threshold == expected
        assert analysis.threshold == (0.37 if threshold is None else threshold)  # the pixels' is untouched
        assert analysis.as_json(include_heatmap=False)["image_threshold"] == expected
    finally:
        engine.close(5)


@pytest.mark.parametrize("setting,expected", [(None, 0.37), (0.9, 0.9)])
def test_the_manifest_operating_point_is_the_default_threshold(tmp_path, setting, expected):
    settings = Settings(model_dir=_write_cue_probe(tmp_path, threshold=0.37), providers=["CPUExecutionProvider"],
                        threshold=setting)
    engine = Engine.from_settings(settings)
    try:
        analysis = analyze_bytes(_jpeg_bytes(_photo(64, 64)), engine, settings)
        assert analysis.threshold == expected
        level = float(analysis.heatmap.mean())
        assert analysis.tampered_fraction == (1.0 if level >= expected else 0.0)
    finally:
        engine.close(5)
