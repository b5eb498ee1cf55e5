"""Building blocks: attention against the literal reference, weight constraints, padding, resize."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from models.layers import (  # noqa: E402
    BayarConv2d,
    ForensicConv,
    OutlierTransform,
    PixelAttention,
    SRMConv2d,
    pixel_attention_reference,
    symmetric_pad,
    tf1_bilinear_resize,
)


def _step(module: torch.nn.Module, x: torch.Tensor, lr: float = 0.5) -> None:
    """One Adam step on a loss that pulls every weight somewhere else."""
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    opt.zero_grad()
    out = module(x)
    (out * torch.randn_like(out)).sum().backward()
    opt.step()


@pytest.mark.parametrize("dilation", [1, 3, 9, 27, 81])
@pytest.mark.parametrize("size", [(7, 5), (16, 16), (30, 23)])
def test_pixel_attention_matches_literal_reference(dilation, size):
    torch.manual_seed(dilation * 100 + size[0])
    block = PixelAttention(dim=8, dilation=dilation)
    for p in block.parameters():  # larger weights: sharp softmax, so masking errors would show
        p.data.normal_(0, 0.6)
    x = torch.randn(2, 8, *size)
    with torch.no_grad():
        fast, slow = block(x), pixel_attention_reference(x, block)
        blocked = block.forward_blocked(x)  # the formulation the ONNX export runs
    assert fast.shape == blocked.shape == x.shape
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(blocked, slow, atol=1e-5, rtol=1e-5)


def test_pixel_attention_reference_counts_outside_neighbours_in_softmax():
    """Outside neighbours get logit 0 (not -inf): on a 1x1 map with zero query the output is
    x + v_centre / 9, because all 9 neighbours share the softmax mass equally."""
    block = PixelAttention(dim=4, dilation=1)
    x = torch.randn(1, 4, 1, 1)
    with torch.no_grad():
        block.query.weight.zero_()
        v = F.conv2d(x, block.value.weight)[:, 4 * 4 : 5 * 4]  # centre neighbour's group
        expected = x + v / 9
        torch.testing.assert_close(block(x), expected)
        torch.testing.assert_close(pixel_attention_reference(x, block), expected)


def test_bayar_constraint_holds_after_optimiser_step():
    torch.manual_seed(0)
    conv = BayarConv2d(3, 3, 5)
    x = torch.randn(2, 3, 12, 12)
    before = conv.kernel.detach().clone()
    for _ in range(3):
        _step(conv, F.pad(x, (2, 2, 2, 2)))
    kernel = conv.kernel.detach()
    assert not torch.allclose(kernel, before), "the optimiser step should have moved the filter"
    torch.testing.assert_close(kernel[:, :, 2, 2], torch.full((3, 3), -1.0))
    off_centre = kernel.sum(dim=(-2, -1)) - kernel[:, :, 2, 2]
    torch.testing.assert_close(off_centre, torch.ones(3, 3))
    # and the constrained kernel is what the layer actually convolves with
    xp = F.pad(x, (2, 2, 2, 2))
    torch.testing.assert_close(conv(xp), F.conv2d(xp, kernel))


def test_srm_filters_stay_fixed_and_are_high_pass():
    torch.manual_seed(0)
    layer = ForensicConv(plain=4, bayar=3)
    srm_before = layer.srm.weight.clone()
    plain_before = layer.plain.weight.detach().clone()
    assert all(p is not layer.srm.weight for p in layer.parameters())
    _step(layer, torch.randn(2, 3, 10, 10))
    assert torch.equal(layer.srm.weight, srm_before)
    assert not torch.equal(layer.plain.weight, plain_before)
    # each SRM kernel sums to zero (high-pass) and reads exactly one colour channel
    w = layer.srm.weight
    torch.testing.assert_close(w.sum(dim=(-2, -1)), torch.zeros(9, 3))
    assert ((w.abs().sum(dim=(-2, -1)) > 0).sum(dim=1) == 1).all()
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert SRMConv2d()(flat).abs().max() < 1e-6


def test_forensic_conv_folds_its_input_scaling_into_the_convolution():
    """Featex feeds 0..255 pixels to a layer built to see them as -1..1: the same output as
    scaling first, borders included (symmetric padding copies pixels, so it commutes)."""
    torch.manual_seed(0)
    folded = ForensicConv(plain=4, bayar=3, input_scale=2 / 255, input_offset=-1.0)
    plain = ForensicConv(plain=4, bayar=3)
    plain.load_state_dict(folded.state_dict())
    image = torch.rand(2, 3, 11, 9) * 255
    with torch.no_grad():
        torch.testing.assert_close(folded(image), plain(image * 2 / 255 - 1), atol=1e-5, rtol=1e-5)


def test_forensic_conv_channel_layout():
    layer = ForensicConv(plain=4, bayar=3)
    out = layer(torch.randn(1, 3, 9, 7))
    assert out.shape == (1, 16, 9, 7)
    assert out.min() >= 0  # ReLU


def test_outlier_transform_unit_norm_after_optimiser_step():
    torch.manual_seed(0)
    layer = OutlierTransform(24, 32)
    x = torch.randn(2, 24, 6, 6)
    _step(layer, x)
    kernel = layer.kernel.detach()
    torch.testing.assert_close(kernel.norm(dim=1).flatten(), torch.ones(32))
    torch.testing.assert_close(layer(x), F.conv2d(x, kernel))


def test_outlier_transform_normalising_its_input_equals_normalising_first():
    torch.manual_seed(0)
    layer = OutlierTransform(24, 32)
    x = torch.randn(2, 24, 6, 5) * 7
    x[0, :, 0, 0] = 0  # an all-zero pixel: F.normalize's eps, not a division by zero
    with torch.no_grad():
        got = layer(x, normalise=True)
        torch.testing.assert_close(got, layer(F.normalize(x, dim=1, eps=1e-12)), atol=1e-6, rtol=1e-5)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("pad", [1, 2])
def test_symmetric_pad_matches_numpy_symmetric(pad):
    x = torch.randn(2, 3, 5, 4)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    np.testing.assert_array_equal(symmetric_pad(x, pad).numpy(), expected)


def _tf1_resize_numpy(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False), written plainly."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        sy = i * (h / out_h)
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, h - 1); fy = sy - y0  # noqa: E702
        for j in range(out_w):
            sx = j * (w / out_w)
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, w - 1); fx = sx - x0  # noqa: E702
            top = x[:, :, y0, x0] * (1 - fx) + x[:, :, y0, x1] * fx
            bottom = x[:, :, y1, x0] * (1 - fx) + x[:, :, y1, x1] * fx
            out[:, :, i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("src,dst", [((5, 7), (11, 3)), ((17, 9), (8, 8)), ((4, 4), (4, 4)), ((1, 3), (5, 2))])
def test_tf1_bilinear_resize_matches_formula(src, dst):
    x = torch.randn(1, 2, *src)
    got = tf1_bilinear_resize(x, dst).numpy()
    np.testing.assert_allclose(got, _tf1_resize_numpy(x.numpy().astype(np.float64), *dst), atol=1e-5)


def test_tf1_bilinear_resize_is_asymmetric_not_half_pixel():
    x = torch.tensor([[[[0.0, 10.0]]]])
    # src = dst * in/out: columns 0, 0.5, 1, 1.5 -> 0, 5, 10, 10 (the last edge is clamped)
    torch.testing.assert_close(tf1_bilinear_resize(x, (1, 4)), torch.tensor([[[[0.0, 5.0, 10.0, 10.0]]]]))
