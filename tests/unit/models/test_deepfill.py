"""The DeepFill-style generator's building blocks against literal formulations on tiny inputs:
the gated convolution as explicit sums, contextual attention as the paper's per-image
convolutions (background patches as kernels, identity-kernel propagation, transposed
convolution for the reconstruction), plus the generator/discriminator contracts and the masks."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from models.deepfill import (  # noqa: E402
    ContextualAttention, DeepFillConfig, DeepFillGenerator, GatedConv2d, PatchDiscriminator, hinge_d_loss,
    hinge_g_loss,
)
from spancore import holes  # noqa: E402


def test_gated_conv_is_elu_feature_times_sigmoid_gate_as_explicit_sums():
    torch.manual_seed(0)
    layer = GatedConv2d(2, 3, k=3, dilation=2)
    x = torch.randn(1, 2, 6, 7)
    out = layer(x)
    w, b = layer.conv.weight.detach(), layer.conv.bias.detach()
    xp = F.pad(x, (2, 2, 2, 2))[0]
    expected = torch.zeros(1, 3, 6, 7)
    for o in range(3):
        for y in range(6):
            for xx in range(7):
                def response(ch: int) -> float:
                    s = b[ch].item()
                    for ci in range(2):
                        for ky in range(3):
                            for kx in range(3):
                                s += w[ch, ci, ky, kx].item() * xp[ci, y + 2 * ky, xx + 2 * kx].item()
                    return s
                feature, gate = response(o), response(3 + o)
                elu = feature if feature > 0 else math.expm1(feature)
                expected[0, o, y, xx] = elu / (1 + math.exp(-gate))
    assert out.shape == (1, 3, 6, 7)
    assert torch.allclose(out, expected, atol=1e-5)


def _same_pad(x, k, stride):
    """TensorFlow 'same' padding as DeepFill's code computes it."""
    h, w = x.shape[2:]
    out_h, out_w = -(-h // stride), -(-w // stride)
    ph = max(0, (out_h - 1) * stride + k - h)
    pw = max(0, (out_w - 1) * stride + k - w)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def _extract(x, k, stride):
    """Patches as kernels: 1×C×H×W -> L×C×k×k (row-major positions), 'same' padding."""
    p = F.unfold(_same_pad(x, k, stride), k, stride=stride)  # 1×(C·k·k)×L
    return p[0].t().reshape(-1, x.shape[1], k, k)


def literal_contextual_attention(f, b, mask, rate=2, scale=10.0):
    """DeepFill v1's contextual attention as its code writes it, one image at a time
    (after the PyTorch port of generative_inpainting's ``contextual_attention``)."""
    outs = []
    for fi, bi, mi in zip(f.split(1), b.split(1), mask.split(1)):
        raw_w = _extract(bi, 2 * rate, rate)                    # L×C×2r×2r
        fd, bd = fi[:, :, ::rate, ::rate], bi[:, :, ::rate, ::rate]
        md = F.max_pool2d(mi, rate)
        hd, wd = bd.shape[2:]
        w = _extract(bd, 3, 1)                                  # L×C×3×3
        norm = torch.sqrt((w.pow(2) + 1e-4).sum(dim=(1, 2, 3), keepdim=True))
        y = F.conv2d(_same_pad(fd, 3, 1), w / norm)             # 1×L×hd×wd (L over background)
        # propagation: the (background, foreground) score image convolved with eye(3), x then y
        fuse = torch.eye(3).view(1, 1, 3, 3)
        y = y.view(1, 1, hd * wd, hd * wd)
        y = F.conv2d(F.pad(y, (1, 1, 1, 1)), fuse)
        y = y.view(1, hd, wd, hd, wd).permute(0, 2, 1, 4, 3).reshape(1, 1, hd * wd, hd * wd)
        y = F.conv2d(F.pad(y, (1, 1, 1, 1)), fuse)
        y = y.view(1, wd, hd, wd, hd).permute(0, 2, 1, 4, 3).reshape(1, hd * wd, hd, wd)
        m = _extract(md, 3, 1)
        mm = (m.mean(dim=(1, 2, 3)) == 0).float().view(1, -1, 1, 1)
        y = F.softmax(y * mm * scale, dim=1) * mm
        outs.append(F.conv_transpose2d(y, raw_w, stride=rate, padding=1) / 4.0)
    return torch.cat(outs)


def test_contextual_attention_matches_the_papers_per_image_convolutions():
    torch.manual_seed(1)
    f = torch.randn(2, 3, 8, 12)
    b = torch.randn(2, 3, 8, 12)
    mask = torch.zeros(2, 1, 8, 12)
    mask[0, :, 2:6, 3:9] = 1
    mask[1, :, 0:3, 7:12] = 1
    ours = ContextualAttention(rate=2, scale=10.0)(f, b, mask)
    literal = literal_contextual_attention(f, b, mask)
    assert ours.shape == b.shape
    assert torch.allclose(ours, literal, atol=1e-5), (ours - literal).abs().max()


def test_contextual_attention_never_borrows_from_the_hole():
    """A loud value inside the hole must not reach any output position."""
    torch.manual_seed(2)
    b = torch.randn(1, 2, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    poisoned = b.clone()
    poisoned[..., 6:10, 6:10] = 1e4  # well inside the hole, beyond every valid patch's reach
    out_clean = ContextualAttention()(b, b, mask)
    out_poisoned = ContextualAttention()(b, poisoned, mask)
    # scores see the poison through f/b matching of hole patches, but weights of hole patches are zero,
    # and the reconstruction reads only valid (hole-free) background patches
    assert out_poisoned.abs().max() < 1e3
    assert torch.isfinite(out_clean).all()


def test_attention_copies_the_matching_background_patch():
    """With a high softmax scale and no propagation, a foreground patch equal to a unique
    background patch is rebuilt from that patch."""
    torch.manual_seed(3)
    b = torch.rand(1, 1, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 0:4, 0:4] = 1
    att = ContextualAttention(rate=2, scale=1000.0, fuse=False)
    out = att(b, b, mask)
    # interior positions far from the hole read themselves back: 4 overlapping patches / 4
    assert torch.allclose(out[..., 8:14, 8:14], b[..., 8:14, 8:14], atol=1e-3)


def test_generator_shapes_composition_and_gradients():
    torch.manual_seed(0)
    g = DeepFillGenerator(DeepFillConfig(cnum=8))
    image = torch.rand(2, 3, 64, 48) * 255
    mask = torch.zeros(2, 1, 64, 48)
    mask[:, :, 16:40, 8:30] = 1
    coarse, refined = g(image, mask)
    assert coarse.shape == refined.shape == image.shape
    assert coarse.abs().max() <= 1 and refined.abs().max() <= 1
    out = g.inpaint(image, mask)
    assert torch.equal(out * (1 - mask), image * (1 - mask))  # known pixels untouched
    (coarse.mean() + refined.mean()).backward()
    assert all(p.grad is not None for p in g.parameters())


def test_generator_ignores_the_content_of_the_hole():
    g = DeepFillGenerator(DeepFillConfig(cnum=8)).eval()
    image = torch.rand(1, 3, 32, 32) * 255
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    other = image.clone()
    other[..., 8:24, 8:24] = 0
    with torch.no_grad():
        assert torch.allclose(g.inpaint(image, mask), g.inpaint(other, mask), atol=1e-4)


def test_checkpoint_round_trip(tmp_path):
    g = DeepFillGenerator(DeepFillConfig(cnum=8))
    torch.save(g.checkpoint(), tmp_path / "g.pt")
    h = DeepFillGenerator.from_checkpoint(str(tmp_path / "g.pt"))
    assert h.config == g.config
    for a, b in zip(g.state_dict().values(), h.state_dict().values()):
        assert torch.equal(a, b)


def test_patch_discriminator_is_spectrally_normalised_and_hinge_losses():
    torch.manual_seed(0)
    d = PatchDiscriminator(8)
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    m = torch.zeros(2, 1, 128, 128)
    out = d(x, m)
    assert out.shape == (2, 32, 2, 2)  # one decision per feature position
    for _ in range(5):  # power iterations converge in training mode
        d(x, m)
    conv = d.body[0]
    sigma = torch.linalg.matrix_norm(conv.weight.reshape(conv.weight.shape[0], -1), ord=2)
    assert abs(sigma.item() - 1.0) < 0.1
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    assert hinge_d_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert hinge_g_loss(fake).item() == pytest.approx(1.0)


def test_brush_strokes_are_deterministic_and_cover_a_plausible_share():
    shares = []
    for seed in range(40):
        a = holes.brush_strokes(np.random.default_rng(seed), 128, 128)
        b = holes.brush_strokes(np.random.default_rng(seed), 128, 128)
        assert np.array_equal(a, b) and a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1}
        shares.append(a.mean())
    assert 0.02 < np.median(shares) < 0.5
    assert max(shares) > min(shares)  # varying widths and vertex counts


@pytest.mark.parametrize("spec, expected", [
    ("rect:2,3,4,5", 20), ("rect:-2,-2,4,4", 4), ("ellipse:10,10,3,3", None),
])
def test_shape_specs(spec, expected):
    m = holes.parse_shape(spec, 20, 20)
    assert m.shape == (20, 20)
    if expected is not None:
        assert int(m.sum()) == expected
    else:
        assert m[10, 10] == 1 and m[0, 0] == 0


@pytest.mark.parametrize("spec", ["rect:1,2,3", "circle:1,2,3,4", "rect:50,50,4,4", "rect:1,1,0,4", ""])
def test_bad_shape_specs(spec):
    with pytest.raises(holes.ShapeError):
        holes.parse_shape(spec, 20, 20)
