"""The cue input and the border handling of the 'cues' preset (models/span.py, models/layers.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from models.export import export_onnx, onnx_parity
from models.layers import PixelAttention, pixel_attention_reference
from models.span import Span, SpanConfig
from spancore.cues import compute_cues


@pytest.mark.parametrize("dilation", [1, 3, 9])
def test_excluded_border_neighbours_match_the_literal_formulation(dilation):
    torch.manual_seed(dilation)
    block = PixelAttention(8, dilation, edges="exclude")
    x = torch.randn(2, 8, 13, 11)
    reference = pixel_attention_reference(x, block)
    torch.testing.assert_close(block(x), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.forward_blocked(x), reference, atol=1e-5, rtol=1e-5)


def test_unknown_edge_mode_is_refused():
    with pytest.raises(ValueError, match="edges"):
        SpanConfig(edges="mirror")
    with pytest.raises(ValueError, match="edges"):
        PixelAttention(8, 1, edges="mirror")


def test_a_cue_model_needs_its_cues():
    model = Span(SpanConfig.preset("cues", grid=(32, 32))).eval()
    image = torch.rand(1, 3, 40, 24) * 255
    with pytest.raises(ValueError, match="cues"):
        model(image)
    rgb = image[0].permute(1, 2, 0).numpy().astype(np.uint8)
    cues = torch.from_numpy(compute_cues(rgb))[None]
    assert model(image, cues).shape == (1, 1, 40, 24)


def test_cues_change_the_map():
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("cues", grid=(32, 32))).eval()
    image = torch.rand(1, 3, 64, 64) * 255
    cues = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(model(image, cues), model(image, torch.zeros_like(cues)))


def test_cues_only_needs_cue_channels():
    with pytest.raises(ValueError, match="cue_channels"):
        SpanConfig(use_featex=False)


@pytest.mark.parametrize("use_featex", [True, False])
def test_export_takes_cues_as_a_second_input(tmp_path, use_featex):
    torch.manual_seed(1)
    model = Span(SpanConfig.preset("cues", grid=(32, 32), use_featex=use_featex))
    path = export_onnx(model, tmp_path / "cues.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image", "cues"]
    assert onnx_parity(model, path, shapes=((1, 17, 9), (2, 64, 48))) <= 1e-4


def test_other_attention_blocks_fit_the_cues_layout_with_replicating_convs():
    """The attention ablation swaps the block of the shipped (edges='exclude') layout: the block
    keeps its own borders, the convs around it replicate the edge as with pixel attention."""
    model = Span(SpanConfig.preset("cues", attention="eca", grid=(16, 16))).eval()
    assert model.config.edges == "exclude"
    assert type(model.attention[0]).__name__ != "PixelAttention"
    assert all(m.padding_mode == "replicate" for m in model.head if isinstance(m, torch.nn.Conv2d))
    image = torch.rand(1, 3, 40, 48) * 255
    cues = torch.randn(1, 8, 5, 6)
    with torch.no_grad():
        assert model(image, cues).shape == (1, 1, 40, 48)
