"""ONNX export: parity with torch on several sizes and batches, the graph contract, weights/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from models.export import OPSET, ParityError, export_onnx, export_weights, onnx_parity  # noqa: E402
from models.span import Span, SpanConfig  # noqa: E402
from spancore.weights import load_manifest  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[3] / "weights"
# Narrow widths keep export and ORT fast; every op of the full network is still in the graph.
SMALL = dict(featex_blocks=((8,), (8, 8), (8,), (8,), (8,)), featex_dim=16, grid=(48, 40), attention_dim=8)
# Fewer attention blocks where only the files and manifest are under test: faster export.
FLOW = dict(SMALL, dilations=(1, 27))
SHAPES = [(1, 17, 9), (2, 64, 48), (3, 31, 70), (1, 333, 517)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("pooled", **SMALL)).eval()
    return model, export_onnx(model, tmp_path_factory.mktemp("onnx") / "span.onnx")


def test_onnx_runtime_matches_torch_on_several_sizes_and_batches(exported):
    model, path = exported
    assert onnx_parity(model, path, SHAPES, tolerance=1e-4) <= 1e-4


def test_parity_for_the_unpooled_reference_layout(tmp_path):
    torch.manual_seed(1)
    model = Span(SpanConfig.preset("reference", **SMALL)).eval()
    path = export_onnx(model, tmp_path / "span.onnx")
    assert onnx_parity(model, path, [(2, 23, 17), (1, 50, 61)]) <= 1e-4


def test_graph_contract(exported):
    _, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= OPSET >= 17
    (image,), (heatmap,) = graph.graph.input, graph.graph.output
    assert (image.name, heatmap.name) == ("image", "heatmap")
    for value, channels in ((image, 3), (heatmap, 1)):
        dims = value.type.tensor_type.shape.dim
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert dims[1].dim_value == channels
        assert all(dims[i].dim_param for i in (0, 2, 3)), "batch, height, width must be dynamic"


def test_exported_graph_is_built_for_onnx_runtime_layouts(exported):
    """The export runs the conv-only attention (forward_blocked) and one Resize for the map:
    no Slice, Pad or Softmax inside the attention blocks (each forced ORT out of its blocked
    layout and back), and the upsample is TF1's coordinate mapping ('asymmetric')."""
    _, path = exported
    nodes = onnx.load(str(path)).graph.node
    attention = [n for n in nodes if n.name.startswith("/attention.")]
    assert attention and not {n.op_type for n in attention} & {"Slice", "Pad", "Softmax"}
    (resize,) = [n for n in nodes if n.op_type == "Resize"]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in resize.attribute}
    assert attributes["coordinate_transformation_mode"] == b"asymmetric"
    assert attributes["mode"] == b"linear"
    assert list(resize.input[1:3]) == ["", ""], "roi and scales are absent, not empty tensors"
    assert resize.output[0] == "heatmap" or any(resize.output[0] in n.input for n in nodes)


def test_parity_failure_is_reported(exported, tmp_path):
    model, path = exported
    other = Span(SpanConfig.preset("pooled", **SMALL)).eval()  # different random weights
    with pytest.raises(ParityError, match="max"):
        onnx_parity(other, path, [(1, 20, 20)])


def test_export_weights_writes_an_untrained_manifest_that_verifies(tmp_path):
    manifest_path = export_weights(
        tmp_path, config=SpanConfig.preset("slim", **FLOW), command="test", parity_shapes=[(1, 17, 9)]
    )
    data = json.loads(manifest_path.read_text())
    assert data["trained"] is False and data["status"].startswith("UNTRAINED")
    assert set(data["files"]) == {"span.onnx", "span.pt"}
    assert SpanConfig.from_dict(data["architecture"]) == SpanConfig.preset("slim", **FLOW)
    assert data["produced_by"]["torch"].startswith("2.")
    manifest = load_manifest(tmp_path)
    assert manifest.trained is False
    reloaded = Span.from_checkpoint(tmp_path / "span.pt")
    assert onnx_parity(reloaded, tmp_path / "span.onnx", [(2, 30, 20)]) <= 1e-4


def test_span_export_command_from_a_checkpoint_carries_its_status(tmp_path):
    from typer.testing import CliRunner

    from spancli.main import app

    torch.manual_seed(2)
    model = Span(SpanConfig.preset("pooled", **FLOW))
    ckpt = tmp_path / "trained.pt"
    training = {"run": "test", "step": 7, "validation": {"val_threshold": 0.21, "val_relative_cut": 0.3}}
    torch.save(model.checkpoint(trained=True, status="trained: test run", scores={"pixel_auc": 0.5},
                                training=training), ckpt)
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "w"),
                                      "--warning", "weak: a test budget"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert data["trained"] is True and data["status"] == "trained: test run"
    assert data["scores"] == {"pixel_auc": 0.5}
    assert data["warning"] == "weak: a test budget" and data["training"] == training
    assert data["threshold"] == 0.21 and data["relative_cut"] == 0.3  # the service's operating point
    assert load_manifest(tmp_path / "w").decision_relative_cut() == 0.3
    assert load_manifest(tmp_path / "w").describe()["warning"] == "weak: a test budget"
    assert data["produced_by"]["command"].startswith("span export")
    load_manifest(tmp_path / "w")


def test_committed_weights_verify_run_and_say_whether_trained():
    manifest = load_manifest(WEIGHTS)
    card = (WEIGHTS / "README.md").read_text()
    if not manifest.trained:
        assert "UNTRAINED" in manifest.status and "UNTRAINED" in card
    checkpoint = torch.load(WEIGHTS / "span.pt", map_location="cpu", weights_only=True)
    assert SpanConfig.from_dict(checkpoint["config"]) == SpanConfig.from_dict(manifest.architecture)
    assert checkpoint["trained"] == manifest.trained
    session = ort.InferenceSession(str(manifest.onnx_path), providers=["CPUExecutionProvider"])
    rgb = np.full((17, 9, 3), 128, np.uint8)
    feeds = {"image": rgb.transpose(2, 0, 1)[None].astype(np.float32)}
    if manifest.cues:  # the second input the service computes (spancore.cues)
        from spancore.cues import compute_cues

        feeds["cues"] = compute_cues(rgb)[None]
    assert [i.name for i in session.get_inputs()] == list(feeds)
    (heatmap,) = session.run(["heatmap"], feeds)
    assert heatmap.shape == (1, 1, 17, 9) and 0 <= heatmap.min() <= heatmap.max() <= 1


def test_export_writes_an_int8_variant_that_the_service_can_run(tmp_path):
    """span.int8.onnx: Featex's 3x3 convolutions quantised (QDQ), the rest float; listed and hashed
    in the manifest, loadable with precision int8, and close to the fp32 map."""
    from spancore.weights import INT8_NAME

    photos = sorted((Path(__file__).resolve().parents[4] / "shared/data/photos/bsds500/train").glob("*.jpg"))[:2]
    assert photos, "the shared BSDS500 photos are needed to calibrate"
    manifest_path = export_weights(tmp_path, config=SpanConfig.preset("slim", **FLOW), command="test",
                                   parity_shapes=[(1, 17, 9)], int8_calibration=photos)
    data = json.loads(manifest_path.read_text())
    assert INT8_NAME in data["files"] and data["int8"]["file"] == INT8_NAME
    graph = onnx.load(str(tmp_path / INT8_NAME)).graph
    quantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    fed_by_int8 = {n.name for n in convs if n.input[1] in quantised}
    assert fed_by_int8 and all(name.startswith(("/featex/blocks", "/featex/transform")) for name in fed_by_int8)
    assert any(n.name.startswith("/featex/forensic") for n in convs if n.name not in fed_by_int8)
    manifest = load_manifest(tmp_path).with_precision("int8")  # verifies both digests
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 40, 36)).astype(np.float32)
    maps = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": image})[0]
            for p in (tmp_path / "span.onnx", manifest.onnx_path)]
    assert maps[1].shape == maps[0].shape and np.isfinite(maps[1]).all()
    assert np.abs(maps[1] - maps[0]).mean() < 0.05
    # a later export without calibration leaves no stale variant behind
    export_weights(tmp_path, config=SpanConfig.preset("slim", **FLOW), command="test", parity_shapes=[(1, 17, 9)])
    assert not (tmp_path / INT8_NAME).exists() and INT8_NAME not in json.loads(manifest_path.read_text())["files"]
