"""The attention blocks of models/attention/: each against a literal transcription of its
paper's equations (written here from the paper, in float64, with loops and einsum, never
calling the block's own code), shape preservation, ONNX export with dynamic H and W, and
selection by name through SpanConfig."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from spancore.testing import ROOT

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
import torch.nn.functional as F  # noqa: E402

from models.attention import (  # noqa: E402
    ATTENTION_BLOCKS,
    BAM,
    CA,
    CAM,
    EA,
    ECA,
    EMA,
    EMSA,
    PAM,
    PSA,
    BottleneckAttention,
    ContextualAttention,
    SCConv,
    build_attention,
)
from models.export import export_onnx, onnx_parity  # noqa: E402
from models.layers import PixelAttention  # noqa: E402
from models.span import Span, SpanConfig  # noqa: E402

WEIGHTS = ROOT / "weights"


# ----------------------------------------------------------------------------- literal helpers

def _d(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().double()


def conv_literal(x, weight, bias=None, *, dilation=1, stride=1, padding=None, groups=1):
    """Cross-correlation written tap by tap: out[o, y, x] = b[o] + sum over the group's input
    channels c and taps (ky, kx) of w[o, c, ky, kx] * x_zero_padded[c, s y + d ky, s x + d kx]."""
    out_ch, in_per_group, kh, kw = weight.shape
    if padding is None:
        padding = dilation * (kh // 2)
    padded = F.pad(x, (padding,) * 4)
    h = (padded.shape[-2] - dilation * (kh - 1) - 1) // stride + 1
    w = (padded.shape[-1] - dilation * (kw - 1) - 1) // stride + 1
    out_per_group = out_ch // groups
    out = torch.zeros(x.shape[0], out_ch, h, w, dtype=x.dtype)
    for g in range(groups):
        xs = padded[:, g * in_per_group : (g + 1) * in_per_group]
        ws = weight[g * out_per_group : (g + 1) * out_per_group]
        for ky in range(kh):
            for kx in range(kw):
                window = xs[:, :, ky * dilation : ky * dilation + stride * (h - 1) + 1 : stride,
                            kx * dilation : kx * dilation + stride * (w - 1) + 1 : stride]
                out[:, g * out_per_group : (g + 1) * out_per_group] += torch.einsum("oc,nchw->nohw", ws[:, :, ky, kx], window)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def pointwise(x, weight, bias=None):
    """A 1x1 convolution / linear map on channels: out[o] = sum_c W[o, c] x[c] + b[o]."""
    out = torch.einsum("oc,nchw->nohw", weight.reshape(weight.shape[0], -1), x)
    return out if bias is None else out + bias[None, :, None, None]


def softmax_literal(logits, dim):
    """exp(a_i) / sum_j exp(a_j) (shifted by the max, which cancels)."""
    e = torch.exp(logits - logits.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def sigmoid(t):
    return 1.0 / (1.0 + torch.exp(-t))


def batch_norm_eval(t, bn, channel_axis=1):
    shape = [1] * t.dim()
    shape[channel_axis] = -1
    mean, var = _d(bn.running_mean).reshape(shape), _d(bn.running_var).reshape(shape)
    return (t - mean) / torch.sqrt(var + bn.eps) * _d(bn.weight).reshape(shape) + _d(bn.bias).reshape(shape)


def layer_norm(tokens, ln):
    mean = tokens.mean(-1, keepdim=True)
    var = ((tokens - mean) ** 2).mean(-1, keepdim=True)
    return (tokens - mean) / torch.sqrt(var + ln.eps) * _d(ln.weight) + _d(ln.bias)


def randomise(block: torch.nn.Module, std: float = 0.4, seed: int = 0) -> None:
    """Non-trivial weights (gates and scales that start at zero included) and BN statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for name, b in block.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def check(block, literal, x, atol=1e-5):
    block.eval()
    with torch.no_grad():
        got = block(x)
    expected = literal(x.double())
    assert got.shape == x.shape
    torch.testing.assert_close(got.double(), expected, atol=atol, rtol=1e-5)


# ----------------------------------------------------------------------------- literal transcriptions

@pytest.mark.parametrize("dilation", [1, 3])
def test_bam_matches_paper(dilation):
    block = BAM(16, reduction=4, dilation=dilation)
    randomise(block)

    def literal(x):
        pooled = x.mean(dim=(2, 3))
        hidden = torch.relu(pooled @ _d(block.channel_in.weight).T + _d(block.channel_in.bias))
        mc = batch_norm_eval(hidden @ _d(block.channel_out.weight).T + _d(block.channel_out.bias), block.channel_norm)
        f1, f2 = block.spatial_mid[0], block.spatial_mid[2]
        s = torch.relu(pointwise(x, _d(block.spatial_in.weight), _d(block.spatial_in.bias)))
        s = torch.relu(conv_literal(s, _d(f1.weight), _d(f1.bias), dilation=dilation))
        s = torch.relu(conv_literal(s, _d(f2.weight), _d(f2.bias), dilation=dilation))
        ms = batch_norm_eval(pointwise(s, _d(block.spatial_out.weight), _d(block.spatial_out.bias)), block.spatial_norm)
        m = sigmoid(mc[:, :, None, None] + ms)
        return x + x * m

    check(block, literal, torch.randn(2, 16, 11, 9))


@pytest.mark.parametrize("kv_stride", [1, 2])
def test_danet_position_attention_matches_paper(kv_stride):
    block = PAM(16, kv_stride=kv_stride)
    randomise(block)

    def literal(a):
        n, c, h, w = a.shape
        if kv_stride == 1:
            context = a
        else:  # the documented reduction: mean over the in-map pixels of s x s windows every s pixels
            s, p = kv_stride, kv_stride // 2
            oh, ow = (h + 2 * p - s) // s + 1, (w + 2 * p - s) // s + 1
            context = torch.zeros(n, c, oh, ow, dtype=a.dtype)
            for oy in range(oh):
                for ox in range(ow):
                    ys = slice(max(0, oy * s - p), min(h, oy * s - p + s))
                    xs = slice(max(0, ox * s - p), min(w, ox * s - p + s))
                    context[:, :, oy, ox] = a[:, :, ys, xs].mean(dim=(2, 3))
        b = pointwise(context, _d(block.conv_b.weight), _d(block.conv_b.bias)).flatten(2)  # B_i
        cc = pointwise(a, _d(block.conv_c.weight), _d(block.conv_c.bias)).flatten(2)  # C_j
        d = pointwise(context, _d(block.conv_d.weight), _d(block.conv_d.bias)).flatten(2)  # D_i
        energy = torch.einsum("nki,nkj->nji", b, cc)  # B_i . C_j
        s_ji = torch.exp(energy) / torch.exp(energy).sum(dim=2, keepdim=True)  # normalised over i
        e = _d(block.alpha) * torch.einsum("nji,nci->ncj", s_ji, d)
        return a + e.reshape(a.shape)

    check(block, literal, torch.randn(2, 16, 7, 5))


def test_danet_channel_attention_matches_paper():
    block = CAM(16)
    randomise(block)

    def literal(a):
        flat = a.flatten(2)  # A_i: channel i over positions
        energy = torch.einsum("nip,njp->nji", flat, flat)  # A_i . A_j
        x_ji = softmax_literal(energy, dim=2)  # over i
        return a + (_d(block.beta) * torch.einsum("nji,nip->njp", x_ji, flat)).reshape(a.shape)

    check(block, literal, torch.randn(2, 16, 5, 4) * 0.5)


def test_eca_matches_paper():
    block = ECA(32)
    assert block.kernel_size == 3  # |log2(32)/2 + 1/2| = 3, odd
    assert ECA(256).kernel_size == 5 and ECA(512).kernel_size == 5
    randomise(block)

    def literal(x):
        y = x.mean(dim=(2, 3))
        a = _d(block.conv.weight).reshape(-1)
        k, c = len(a), y.shape[1]
        omega = torch.zeros_like(y)
        for i in range(c):
            for j in range(k):
                neighbour = i + j - (k - 1) // 2
                if 0 <= neighbour < c:
                    omega[:, i] += a[j] * y[:, neighbour]
        return x * sigmoid(omega)[:, :, None, None]

    check(block, literal, torch.randn(2, 32, 6, 7))


@pytest.mark.parametrize("rate", [1, 4])
def test_scconv_matches_paper(rate):
    block = SCConv(16, pooling_rate=rate)
    randomise(block, std=0.2)

    def avg_pool(t, r):  # AvgPool_r: r x r windows every r pixels, padded by r // 2, mean of in-map pixels
        if r == 1:
            return t
        n, c, h, w = t.shape
        p = r // 2
        oh, ow = (h + 2 * p - r) // r + 1, (w + 2 * p - r) // r + 1
        out = torch.zeros(n, c, oh, ow, dtype=t.dtype)
        for oy in range(oh):
            for ox in range(ow):
                out[:, :, oy, ox] = t[:, :, max(0, oy * r - p):oy * r - p + r, max(0, ox * r - p):ox * r - p + r].mean((2, 3))
        return out

    def literal(x):
        x1, x2 = x[:, :8], x[:, 8:]
        k1, k2, k3, k4 = (_d(k.weight) for k in (block.k1, block.k2, block.k3, block.k4))
        t1 = avg_pool(x1, rate)
        x1p = conv_literal(t1, k2)
        if rate > 1:  # Up: bilinear interpolation back to X1's size (the library operator)
            x1p = F.interpolate(x1p, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        y1 = conv_literal(conv_literal(x1, k3) * sigmoid(x1 + x1p), k4)
        return torch.cat([y1, conv_literal(x2, k1)], dim=1)

    check(block, literal, torch.randn(2, 16, 13, 10))


@pytest.mark.parametrize("dilation", [1, 2])
def test_psa_matches_paper(dilation):
    block = PSA(32, dilation=dilation)
    assert block.groups == (2, 4, 8, 8)  # G = 2^((k-1)/2) = 2, 4, 8, 16, capped to divide 8 channels per scale
    assert PSA(128).groups == (2, 4, 8, 16)
    randomise(block, std=0.2)

    def literal(x):
        f = [conv_literal(x, _d(conv.weight), dilation=dilation, groups=g) for conv, g in zip(block.pyramid, block.groups)]
        w0, b0 = _d(block.squeeze.weight).flatten(1), _d(block.squeeze.bias)
        w1, b1 = _d(block.excite.weight).flatten(1), _d(block.excite.bias)
        z = [sigmoid(torch.relu(fi.mean((2, 3)) @ w0.T + b0) @ w1.T + b1) for fi in f]
        total = sum(torch.exp(zi) for zi in z)
        return torch.cat([fi * (torch.exp(zi) / total)[:, :, None, None] for fi, zi in zip(f, z)], dim=1)

    check(block, literal, torch.randn(2, 32, 9, 11))


@pytest.mark.parametrize(("heads", "sr"), [(1, 1), (2, 2), (4, 4)])
def test_emsa_matches_paper(heads, sr):
    block = EMSA(16, num_heads=heads, sr_ratio=sr)
    randomise(block, std=0.3)

    def literal(x):
        n, c, h, w = x.shape
        dk = c // heads
        tokens = layer_norm(x.flatten(2).transpose(1, 2), block.norm)  # LN(x), the block's pre-norm
        q = tokens @ _d(block.query.weight).T
        if sr > 1:
            grid = tokens.transpose(1, 2).reshape(n, c, h, w)
            reduced = conv_literal(grid, _d(block.reduce.weight), _d(block.reduce.bias), stride=sr, padding=sr // 2,
                                   groups=c)
            reduced = layer_norm(reduced.flatten(2).transpose(1, 2), block.reduce_norm)
        else:
            reduced = tokens
        kv = reduced @ _d(block.key_value.weight).T
        k, v = kv[..., :c], kv[..., c:]
        logits = torch.stack([q[..., i * dk:(i + 1) * dk] @ k[..., i * dk:(i + 1) * dk].transpose(1, 2) / math.sqrt(dk)
                              for i in range(heads)], dim=1)  # N x heads x HW x L
        mix_w, mix_b = _d(block.head_mix.weight).flatten(1), _d(block.head_mix.bias)
        mixed = torch.einsum("gh,nhij->ngij", mix_w, logits) + mix_b[None, :, None, None]
        a = softmax_literal(mixed, dim=-1)
        mean = a.mean(dim=(-2, -1), keepdim=True)
        a = (a - mean) / torch.sqrt(((a - mean) ** 2).mean(dim=(-2, -1), keepdim=True) + 1e-5)  # IN
        heads_out = torch.cat([a[:, i] @ v[..., i * dk:(i + 1) * dk] for i in range(heads)], dim=-1)
        out = heads_out @ _d(block.proj.weight).T + _d(block.proj.bias)
        return x + out.transpose(1, 2).reshape(x.shape)

    check(block, literal, torch.randn(2, 16, 9, 7), atol=1e-4)


def test_external_attention_matches_paper():
    block = EA(16, memory_units=12)
    randomise(block)

    def literal(x):
        feats = x.flatten(2).transpose(1, 2)  # N x HW x C
        mk, mv = _d(block.memory_key.weight)[:, :, 0], _d(block.memory_value.weight)[:, :, 0]  # S x C, C x S
        a_tilde = feats @ mk.T  # N x HW x S
        a_hat = torch.exp(a_tilde) / torch.exp(a_tilde).sum(dim=1, keepdim=True)  # over pixels
        a = a_hat / a_hat.sum(dim=2, keepdim=True)  # over memory units
        return x + (a @ mv.T).transpose(1, 2).reshape(x.shape)

    check(block, literal, torch.randn(2, 16, 6, 5))


def test_ema_matches_paper_and_tracks_its_bases_only_in_training():
    block = EMA(16, bases=6, iterations=3)
    randomise(block, std=0.3)

    def literal(x):
        feats = pointwise(x, _d(block.conv_in.weight), _d(block.conv_in.bias)).flatten(2).transpose(1, 2)  # N x L x C
        mu = _d(block.mu)[0].T.expand(x.shape[0], -1, -1)  # N x K x C
        for _ in range(3):
            z = softmax_literal(feats @ mu.transpose(1, 2), dim=2)  # E-step
            mu = (z.transpose(1, 2) @ feats) / z.sum(dim=1)[:, :, None]  # M-step
            mu = mu / mu.norm(dim=2, keepdim=True)
        recon = (z @ mu).transpose(1, 2).reshape(x.shape)
        return x + pointwise(recon, _d(block.conv_out.weight))

    x = torch.randn(2, 16, 7, 6)
    check(block, literal, x)
    before = block.mu.clone()
    block.eval()(x)
    torch.testing.assert_close(block.mu, before)
    block.train()(x)
    assert not torch.allclose(block.mu, before)
    torch.testing.assert_close(block.mu.norm(dim=1), torch.ones(1, 6))


@pytest.mark.parametrize(("rate", "size"), [(2, (11, 9)), (4, (13, 10))])
def test_contextual_attention_matches_deepfill(rate, size):
    block = CA(8, rate=rate)
    randomise(block)

    def literal(x):
        n, c, h, w = x.shape
        r, s = rate, rate // 2
        lh, lw = -(-h // r), -(-w // r)
        padded = F.pad(x, (0, lw * r - w, 0, lh * r - h))
        low = torch.stack([torch.stack([padded[:, :, i * r:(i + 1) * r, j * r:(j + 1) * r].mean((2, 3))
                                        for j in range(lw)], -1) for i in range(lh)], -2)  # N x C x lh x lw
        low_padded = F.pad(low, (1, 1, 1, 1))
        positions = [(i, j) for i in range(lh) for j in range(lw)]
        patch = torch.stack([low_padded[:, :, i:i + 3, j:j + 3].flatten(1) for i, j in positions], 1)  # N x L x 9C
        patch = patch / patch.norm(dim=2, keepdim=True).clamp_min(1e-4)
        big = 2 * r
        x_padded = F.pad(x, (big, big, big, big))
        raw = torch.stack([x_padded[:, :, big + i * r - s:big + i * r - s + big, big + j * r - s:big + j * r - s + big]
                           for i, j in positions], 1)  # N x L x C x 2r x 2r: raw patch at origin (i r - s, j r - s)
        recon = torch.zeros(n, c, h + 2 * big, w + 2 * big, dtype=x.dtype)
        for a, (i, j) in enumerate(positions):
            others = [b for b in range(len(positions)) if b != a]  # the rest of the image
            scores = torch.einsum("nk,nbk->nb", patch[:, a], patch[:, others])
            weights = softmax_literal(block.softmax_scale * scores, dim=1)
            rebuilt = torch.einsum("nb,nbchw->nchw", weights, raw[:, others])
            oy, ox = big + i * r - s, big + j * r - s
            recon[:, :, oy:oy + big, ox:ox + big] += rebuilt  # deconvolution: overlap-add
        recon = recon[:, :, big:big + h, big:big + w] / 4
        return x + _d(block.gamma) * (x - recon)

    check(block, literal, torch.randn(2, 8, *size))


def test_contextual_attention_rebuilds_a_repeated_pattern_from_its_other_copies():
    """Behaviour, not algebra: on a periodic map every patch has exact copies elsewhere,
    so the reconstruction away from the border equals the map itself."""
    block = ContextualAttention(4, rate=2, softmax_scale=500.0)
    tile = torch.randn(1, 4, 4, 4)
    x = tile.repeat(1, 1, 6, 6)
    with torch.no_grad():
        recon = block.reconstruct(x, block.match(x))
    torch.testing.assert_close(recon[:, :, 6:-6, 6:-6], x[:, :, 6:-6, 6:-6], atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------- every block, as SPAN's slots build them

NAMES = sorted(ATTENTION_BLOCKS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dilation", [1, 81])
def test_slot_blocks_preserve_shape_at_odd_sizes(name, dilation):
    torch.manual_seed(0)
    block = build_attention(name, dim=8, dilation=dilation)
    for shape in [(2, 8, 7, 5), (2, 8, 1, 1), (2, 8, 13, 30)]:
        x = torch.randn(*shape)
        block.train()
        out = block(x)  # batches of 2: BAM's batch norms cannot train on one value per channel
        assert out.shape == x.shape
        out.sum().backward()  # trainable as a slot
        with torch.no_grad():
            assert block.eval()(x).shape == x.shape
            assert block(x[:1]).shape == x[:1].shape


@pytest.mark.parametrize("name", NAMES)
def test_slot_blocks_export_to_onnx_with_dynamic_size(name, tmp_path):
    torch.manual_seed(1)
    block = build_attention(name, dim=8, dilation=3).eval()
    randomise(block, std=0.3, seed=1)
    path = tmp_path / f"{name}.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(block, (torch.randn(1, 8, 24, 20),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": axes, "y": axes})
    tracer = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not tracer, f"the trace may not generalise to other sizes: {tracer}"
    import onnx

    graph = onnx.load(str(path))
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}, "no custom or ATen fallback ops"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 8, 24, 20), (2, 8, 37, 29)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = block(x).numpy()
        (got,) = session.run(None, {"x": x.numpy()})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4


# ----------------------------------------------------------------------------- selection through SpanConfig

SMALL = dict(featex_blocks=((8,), (8, 8), (8,), (8,), (8,)), featex_dim=16, grid=(40, 32), attention_dim=8,
             dilations=(1, 27))


@pytest.mark.parametrize("name", NAMES)
def test_span_config_selects_the_block_by_name(name):
    config = SpanConfig.preset("slim", **SMALL, attention=name)
    model = Span(config).eval()  # eval: BAM's batch norms cannot train on a batch of one
    expected = type(build_attention(name, dim=8, dilation=1))
    assert [type(block) for block in model.attention] == [expected, expected]
    assert SpanConfig.from_dict(config.to_dict()) == config
    assert model(torch.rand(1, 3, 21, 17) * 255).shape == (1, 1, 21, 17)


def test_default_is_pixel_attention_and_old_configs_load():
    assert SpanConfig().attention == "pixel"
    model = Span(SpanConfig.preset("slim", **SMALL))
    assert all(isinstance(block, PixelAttention) for block in model.attention)
    old = SpanConfig.preset("slim").to_dict()
    del old["attention"]  # a checkpoint written before the field existed
    assert SpanConfig.from_dict(old).attention == "pixel"
    shipped = WEIGHTS / "span.pt"
    if shipped.is_file():
        Span.from_checkpoint(shipped)  # strict state_dict load: same keys and shapes as before


def test_unknown_attention_name_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown attention block 'transformer'; choose from .*bam.*pixel"):
        SpanConfig(attention="transformer")
    with pytest.raises(ValueError, match="unknown attention block"):
        SpanConfig.from_dict({**SpanConfig().to_dict(), "attention": "nope"})


def test_span_with_contextual_attention_exports_with_parity(tmp_path):
    torch.manual_seed(2)
    model = Span(SpanConfig.preset("slim", **SMALL, attention="contextual")).eval()
    for block in model.attention:
        randomise(block, std=0.2, seed=3)
    path = export_onnx(model, tmp_path / "span.onnx")
    assert onnx_parity(model, path, [(1, 33, 41), (2, 64, 48)]) <= 1e-4


def test_paper_name_aliases():
    assert BAM is BottleneckAttention and CA is ContextualAttention
