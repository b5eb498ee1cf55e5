"""service.engine (session, large-image policy, queue, dynamic batcher) and service.analysis.

Mechanics are checked with a tiny per-pixel probe model (heatmap = red / 255) written here
with `onnx`, so every output pixel can be predicted exactly; the committed model in
weights/ is checked for the contract and for batch/single agreement.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.analysis import analyze_bytes
from spancore.scoring import image_score
from service.decode import InputError
from service.engine import Engine, EngineError, EngineStopped, InferenceTimeout, Overloaded, create_session
from spancore.weights import ManifestError
from service.settings import REPO_ROOT, Settings
from spancore.testing import EXIF_SAMPLES

onnx = pytest.importorskip("onnx")


def _write_probe_model(directory: Path) -> Path:
    """heatmap[n, 0] = image[n, 0] / 255: the red channel as the 'probability'."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["red"]),
        helper.make_node("Mul", ["red", "scale"], ["heatmap"]),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [
            numpy_helper.from_array(np.array([0], np.int64), "starts"),
            numpy_helper.from_array(np.array([1], np.int64), "ends"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "span.onnx")
    data = (directory / "span.onnx").read_bytes()
    manifest = {
        "name": "probe", "version": "test", "trained": False, "status": "TEST PROBE: red channel / 255",
        "input": {"name": "image"}, "output": {"name": "heatmap"},
        "files": {"span.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    return _write_probe_model(tmp_path_factory.mktemp("probe"))


def _engine(probe_dir: Path, **overrides) -> Engine:
    settings = Settings(model_dir=probe_dir, providers=["CPUExecutionProvider"], **overrides)
    return Engine.from_settings(settings)


@pytest.fixture
def probe(probe_dir):
    engine = _engine(probe_dir, max_queue_delay_ms=50)
    yield engine
    engine.close(5)


def _random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _record_batches(engine: Engine) -> list[int]:
    sizes: list[int] = []
    run = engine._run

    def recording(batch):
        sizes.append(batch["image"].shape[0])
        return run(batch)

    engine._run = recording
    return sizes


# ------------------------------------------------------------------ policy
def test_predict_is_exact_below_the_working_size(probe):
    rgb = _random_rgb(120, 160)
    heatmap = probe.predict(rgb)
    assert heatmap.dtype == np.float32 and heatmap.shape == (120, 160)
    np.testing.assert_allclose(heatmap, rgb[:, :, 0] / 255, atol=1e-6)


def test_resize_policy_bounds_the_working_size_and_returns_full_size(probe_dir):
    engine = _engine(probe_dir, large_image_policy="resize", max_working_pixels=64 * 64)
    try:
        sizes: list[tuple] = []
        run = engine._run
        engine._run = lambda batch: sizes.append(batch["image"].shape) or run(batch)
        smooth = np.repeat(np.linspace(0, 255, 400, dtype=np.float32)[None, :], 300, axis=0)
        rgb = np.stack([smooth] * 3, axis=2).astype(np.uint8)
        heatmap = engine.predict(rgb)
        assert heatmap.shape == (300, 400)
        (shape,) = sizes
        assert shape[2] * shape[3] <= 64 * 64 and abs(shape[3] / shape[2] - 400 / 300) < 0.1
        np.testing.assert_allclose(heatmap, rgb[:, :, 0] / 255, atol=0.03)  # a smooth ramp survives resizing
    finally:
        engine.close(5)


def test_tile_policy_covers_every_pixel_at_native_resolution(probe_dir):
    engine = _engine(probe_dir, large_image_policy="tile", tile_size=128, tile_overlap=16, max_batch_size=3)
    try:
        shapes: list[tuple] = []
        run = engine._run
        engine._run = lambda batch: shapes.append(batch["image"].shape) or run(batch)
        rgb = _random_rgb(300, 410, seed=3)
        heatmap = engine.predict(rgb)
        # Per-pixel model + weights that sum to one => tiling must reproduce it exactly.
        np.testing.assert_allclose(heatmap, rgb[:, :, 0] / 255, atol=1e-5)
        assert all(s[1:] == (3, 128, 128) for s in shapes) and max(s[0] for s in shapes) <= 3
        assert sum(s[0] for s in shapes) == len(engine.plan(rgb).origins) == 3 * 4
    finally:
        engine.close(5)


def test_max_batch_pixels_splits_the_tiles_of_one_photo_into_smaller_ort_calls(probe_dir):
    engine = _engine(probe_dir, large_image_policy="tile", tile_size=128, tile_overlap=16, max_batch_size=4,
                     max_batch_pixels=2 * 128 * 128 + 1)
    try:
        shapes: list[tuple] = []
        run = engine._run
        engine._run = lambda batch: shapes.append(batch["image"].shape) or run(batch)
        rgb = _random_rgb(300, 410, seed=4)
        np.testing.assert_allclose(engine.predict(rgb), rgb[:, :, 0] / 255, atol=1e-5)
        assert [s[0] for s in shapes] == [2] * 6  # 12 tiles, two a call: the pixel cap, not max_batch_size
    finally:
        engine.close(5)
    big = _engine(probe_dir, large_image_policy="resize", max_batch_pixels=4096)
    try:  # one input larger than the cap still runs, alone
        assert big.predict(_random_rgb(100, 90)).shape == (100, 90)
    finally:
        big.close(5)


def test_tile_policy_downscales_beyond_max_tiled_pixels(probe_dir):
    engine = _engine(probe_dir, large_image_policy="tile", tile_size=64, tile_overlap=8, max_tiled_pixels=100 * 100)
    try:
        plan = engine.plan(_random_rgb(300, 300))
        assert plan.work_height * plan.work_width <= 100 * 100
        assert engine.predict(_random_rgb(300, 300)).shape == (300, 300)
    finally:
        engine.close(5)


def test_plan_rejects_wrong_arrays(probe):
    with pytest.raises(ValueError):
        probe.plan(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        probe.plan(np.zeros((10, 10, 3), np.float32))


# ------------------------------------------------------------------ queue and batcher
def test_concurrent_same_shape_requests_share_one_batch_and_get_their_own_maps(probe):
    sizes = _record_batches(probe)
    images = [_random_rgb(64, 96, seed=i) for i in range(4)]

    async def go():
        return await asyncio.gather(*(probe.submit(rgb) for rgb in images))

    results = asyncio.run(go())
    for rgb, heatmap in zip(images, results, strict=True):
        np.testing.assert_allclose(heatmap, rgb[:, :, 0] / 255, atol=1e-6)
    assert sizes == [4]


def test_different_shapes_are_never_stacked(probe):
    sizes = _record_batches(probe)
    images = [_random_rgb(64, 96, 1), _random_rgb(80, 80, 2), _random_rgb(64, 96, 3), _random_rgb(80, 80, 4)]

    async def go():
        return await asyncio.gather(*(probe.submit(rgb) for rgb in images))

    for rgb, heatmap in zip(images, asyncio.run(go()), strict=True):
        np.testing.assert_allclose(heatmap, rgb[:, :, 0] / 255, atol=1e-6)
    assert sorted(sizes) == [2, 2]


def _blocked(engine: Engine) -> threading.Event:
    release = threading.Event()
    run = engine._run

    def slow(batch):
        release.wait(10)
        return run(batch)

    engine._run = slow
    return release


def test_full_queue_is_refused_at_once_and_wait_mode_waits(probe_dir):
    engine = _engine(probe_dir, queue_size=2, max_batch_size=1, max_queue_delay_ms=0)
    release = _blocked(engine)
    rgb = _random_rgb(32, 32)

    async def go():
        first = [asyncio.create_task(engine.submit(rgb)) for _ in range(2)]
        await asyncio.sleep(0.2)
        assert engine.queue_depth == 2 and not engine.has_capacity
        with pytest.raises(Overloaded) as caught:
            await engine.submit(rgb)
        assert caught.value.retry_after_s == engine.settings.retry_after_s
        waiting = asyncio.create_task(engine.submit(rgb, wait=True))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        release.set()
        results = await asyncio.gather(*first, waiting)
        assert len(results) == 3 and engine.queue_depth == 0

    try:
        asyncio.run(go())
    finally:
        release.set()
        engine.close(5)


def test_timeout_and_model_failure_reach_the_caller_and_the_batcher_survives(probe_dir):
    engine = _engine(probe_dir, request_timeout_s=0.3, max_queue_delay_ms=0)
    release = _blocked(engine)
    rgb = _random_rgb(32, 32)
    try:
        with pytest.raises(InferenceTimeout):
            asyncio.run(engine.submit(rgb))
        release.set()
        run = engine._run
        engine._run = lambda batch: (_ for _ in ()).throw(RuntimeError("boom"))
        with pytest.raises(EngineError, match="boom"):
            asyncio.run(engine.submit(rgb))
        engine._run = run
        np.testing.assert_allclose(asyncio.run(engine.submit(rgb)), rgb[:, :, 0] / 255, atol=1e-6)
    finally:
        release.set()
        engine.close(5)


def test_close_finishes_queued_work_then_refuses(probe_dir):
    engine = _engine(probe_dir, max_batch_size=1, max_queue_delay_ms=0)
    release = _blocked(engine)
    rgb = _random_rgb(32, 32)

    async def go():
        tasks = [asyncio.create_task(engine.submit(rgb)) for _ in range(3)]
        await asyncio.sleep(0.2)
        closer = asyncio.create_task(asyncio.to_thread(engine.close, 10))
        await asyncio.sleep(0.1)
        release.set()
        results = await asyncio.gather(*tasks)
        await closer
        with pytest.raises(EngineStopped):
            await engine.submit(rgb)
        return results

    assert len(asyncio.run(go())) == 3
    assert not engine.ready


# ------------------------------------------------------------------ session and manifest
def test_unavailable_provider_falls_back_to_cpu_and_is_not_ready(probe_dir):
    settings = Settings(model_dir=probe_dir, providers=["CUDAExecutionProvider"])
    engine = Engine.from_settings(settings)
    try:
        if engine.provider == "CUDAExecutionProvider":
            pytest.skip("a working CUDA provider is present")
        assert engine.provider == "CPUExecutionProvider"
        engine.warm_up()
        assert engine.warmed and not engine.provider_as_configured and not engine.ready
    finally:
        engine.close(5)


def test_warm_up_runs_the_configured_number_of_inferences_at_the_working_size(probe_dir, monkeypatch):
    engine = _engine(probe_dir, warmup_runs=3, max_working_pixels=128 * 128)
    shapes: list[tuple[int, ...]] = []
    real_predict = engine.predict
    monkeypatch.setattr(engine, "predict", lambda rgb: shapes.append(rgb.shape) or real_predict(rgb))
    try:
        assert not engine.warmed
        engine.warm_up()
        assert engine.warmed and shapes == [(128, 128, 3)] * 3
    finally:
        engine.close(5)


def test_gpu_providers_are_not_requested_without_an_nvidia_driver(probe_dir, monkeypatch):
    """onnxruntime-gpu lists CUDA as available everywhere; asking for it on a CPU host only
    makes ORT print a library-loading error at every start."""
    from service import engine as engine_module

    requested = []
    real_session = engine_module.ort.InferenceSession

    def spy(path, options, providers):
        requested.append([p if isinstance(p, str) else p[0] for p in providers])
        return real_session(path, options, providers=providers)

    monkeypatch.setattr(engine_module.ort, "InferenceSession", spy)
    monkeypatch.setattr(engine_module.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(engine_module, "nvidia_driver_present", lambda: False)
    create_session(probe_dir / "span.onnx", ["CUDAExecutionProvider", "CPUExecutionProvider"], 1)
    assert requested == [["CPUExecutionProvider"]]


@pytest.mark.parametrize("spinning", [True, False])
def test_intra_op_spinning_setting_reaches_the_session(probe_dir, spinning):
    engine = _engine(probe_dir, intra_op_spinning=spinning)
    try:
        entries = engine.session.get_session_options().get_session_config_entry
        # ORT spins unless told otherwise, so the entry is written only to turn spinning off.
        if spinning:
            with pytest.raises(RuntimeError):
                entries("session.intra_op.allow_spinning")
        else:
            assert entries("session.intra_op.allow_spinning") == "0"
        assert np.allclose(engine.predict(_random_rgb(40, 30)), _random_rgb(40, 30)[..., 0] / 255, atol=1e-6)
    finally:
        engine.close(5)


def test_a_changed_model_file_is_refused(tmp_path):
    directory = _write_probe_model(tmp_path / "tampered")
    with open(directory / "span.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        Engine.from_settings(Settings(model_dir=directory))


def test_committed_model_follows_the_contract_and_batches_consistently():
    settings = Settings(providers=["CPUExecutionProvider"], max_queue_delay_ms=200)
    engine = Engine.from_settings(settings)
    try:
        assert engine.manifest.directory == REPO_ROOT / "weights"
        photo = np.asarray(Image.open(EXIF_SAMPLES / "jpg" / "Canon_PowerShot_S40.jpg").convert("RGB").resize((160, 120)))
        single = engine.predict(photo)
        assert single.shape == (120, 160) and single.dtype == np.float32
        assert np.isfinite(single).all() and 0 <= single.min() and single.max() <= 1
        flipped = np.ascontiguousarray(photo[:, ::-1])
        sizes = _record_batches(engine)

        async def go():
            return await asyncio.gather(engine.submit(photo), engine.submit(flipped))

        together = asyncio.run(go())
        assert sizes == [2]
        np.testing.assert_allclose(together[0], single, atol=1e-4)
        np.testing.assert_allclose(together[1], engine.predict(flipped), atol=1e-4)
    finally:
        engine.close(5)


# ------------------------------------------------------------------ analysis
def test_analyze_bytes_decodes_predicts_and_scores(probe):
    rgb = _random_rgb(60, 80, seed=7)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    analysis = analyze_bytes(buffer.getvalue(), probe, probe.settings, keep_photo=True)
    np.testing.assert_allclose(analysis.heatmap, rgb[:, :, 0] / 255, atol=1e-6)
    assert analysis.score == pytest.approx(image_score(rgb[:, :, 0] / 255), abs=1e-6)
    assert (analysis.width, analysis.height) == (80, 60) and analysis.rgb is not None
    answer = analysis.as_json()
    assert set(answer) >= {"score", "tampered_fraction", "threshold", "width", "height", "heatmap_png_base64",
                           "model", "timings_ms", "metadata"}
    assert answer["model"] == {"name": "probe", "version": "test", "sha256": probe.manifest.sha256, "trained": False,
                               "precision": "fp32"}
    assert set(answer["timings_ms"]) >= {"decode", "inference", "encode", "total"}
    with pytest.raises(InputError):
        analyze_bytes(b"not an image", probe, probe.settings)
