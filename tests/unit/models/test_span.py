"""The whole network: any size in, same-size probability map out; config, freezing, checkpoints."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from models.span import PRESETS, Featex, Span, SpanConfig  # noqa: E402

# Narrow widths and a small grid: shapes and plumbing do not depend on width.
NARROW = dict(featex_blocks=((8,), (8, 8), (8,), (8,), (8,)), featex_dim=16, grid=(40, 40), attention_dim=8)


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 255.0


@pytest.mark.parametrize("preset", ["reference", "pooled"])  # with NARROW, slim == pooled
@pytest.mark.parametrize("batch,height,width", [(1, 333, 517), (1, 17, 9), (3, 17, 9), (2, 2, 3)])
def test_output_is_a_probability_map_of_the_input_size(preset, batch, height, width):
    torch.manual_seed(0)
    model = Span(SpanConfig.preset(preset, **NARROW)).eval()
    with torch.no_grad():
        heatmap = model(_image(batch, 3, height, width))
    assert heatmap.shape == (batch, 1, height, width)
    assert torch.isfinite(heatmap).all()
    assert heatmap.min() >= 0 and heatmap.max() <= 1


def test_batch_items_do_not_leak_into_each_other():
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("pooled", **NARROW)).eval()
    images = _image(3, 3, 21, 30)
    with torch.no_grad():
        together = model(images)
        alone = torch.cat([model(images[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)


def test_featex_features_are_unit_norm_and_pooled_as_configured():
    torch.manual_seed(0)
    for preset, size in (("reference", (13, 10)), ("pooled", (4, 3)), ("slim", (4, 3))):
        featex = Featex(SpanConfig.preset(preset, **NARROW)).eval()
        with torch.no_grad():
            features = featex(_image(2, 3, 13, 10))
        assert features.shape == (2, 16, *size), preset
        torch.testing.assert_close(features.norm(dim=1), torch.ones(2, *size))


def test_reference_preset_is_the_paper_layout():
    config = SpanConfig.preset("reference")
    assert config.featex_blocks == ((32,), (64, 64), (128, 128, 128), (256, 256, 256), (256, 256))
    assert not any(config.featex_pool) and config.stride == 1
    assert config.dilations == (1, 3, 9, 27, 81) and config.grid == (224, 224)
    model = Span(config)
    assert model.featex.forensic.out_channels == 16
    assert len(model.attention) == 5 and model.outlier.kernel.shape == (32, 256, 1, 1)
    head = [m for m in model.head if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in head] == [
        (32, 32, (5, 5)), (32, 16, (5, 5)), (16, 8, (5, 5)), (8, 4, (5, 5)), (4, 1, (5, 5)),
    ]


def test_config_round_trips_through_json():
    for name in PRESETS:
        config = SpanConfig.preset(name, grid=(96, 128))
        assert SpanConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown preset"):
        SpanConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown SpanConfig fields"):
        SpanConfig.from_dict({"widths": [1]})


def test_freeze_featex_stops_its_gradients():
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("pooled", **NARROW))
    model.freeze_featex()
    frozen = {id(p) for p in model.featex.parameters()}
    assert frozen and not frozen & {id(p) for p in model.trainable_parameters()}
    model.grid_logits(_image(1, 3, 20, 20)).sum().backward()
    assert all(p.grad is None for p in model.featex.parameters())
    assert model.outlier.raw.grad is not None
    model.freeze_featex(False)
    assert all(p.requires_grad for p in model.featex.parameters())


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("slim", **NARROW)).eval()
    path = tmp_path / "ckpt.pt"
    torch.save(model.checkpoint(step=7), path)
    again = Span.from_checkpoint(path).eval()
    assert again.config == model.config
    image = _image(1, 3, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(again(image), model(image), atol=0, rtol=0)


def test_grid_logits_give_the_heatmap_through_sigmoid_and_resize():
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("pooled", **NARROW)).eval()
    image = _image(1, 3, 40, 40)  # same size as the grid: the resize is the identity
    with torch.no_grad():
        torch.testing.assert_close(model(image), torch.sigmoid(model.grid_logits(image)))


def test_grid_logits_equal_the_stage_two_path_from_unit_norm_features():
    """grid_logits normalises after the outlier transform (cheaper); stage 2 trains through
    logits_from_features(featex(image)) with the features normalised first. Same function."""
    torch.manual_seed(0)
    model = Span(SpanConfig.preset("slim", grid=(24, 20))).eval()
    image = torch.rand(2, 3, 45, 38) * 255
    with torch.no_grad():
        torch.testing.assert_close(
            model.grid_logits(image), model.logits_from_features(model.featex(image)), atol=1e-5, rtol=1e-5
        )


def test_forensic_first_layer_runs_in_fp32_under_mixed_precision():
    """bf16 keeps 8 bits of mantissa: the input and the high-pass responses, a pixel level or
    less, would be rounded away. Under autocast the rest of Featex may run in bf16, the first
    layer may not, and its responses equal the fp32 ones exactly."""
    torch.manual_seed(0)
    featex = Featex(SpanConfig.preset("slim")).eval()
    image = torch.rand(1, 3, 40, 40) * 255
    seen = []
    featex.forensic.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        featex(image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            featex(image)
    fp32, mixed = seen
    assert mixed.dtype == torch.float32
    assert torch.equal(fp32, mixed)
