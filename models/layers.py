"""Building blocks of SPAN, one job each.

SPAN: Hu, Zhang, Jiang, Chen, Natarajan, Shi, "SPAN: Spatial Pyramid Attention
Network for Image Manipulation Localization", ECCV 2020.
Its feature extractor and forensic first layer are ManTra-Net's: Wu, AbdAlmageed,
Natarajan, "ManTra-Net: Manipulation Tracing Network for Detection and Localization
of Image Forgeries With Anomalous Features", CVPR 2019.

Every block here exports to ONNX (opset 17) with dynamic batch, height and width.
Constraints on weights (Bayar, unit norm) are applied in ``forward`` from the raw
parameters, so they hold for every forward pass, after any optimiser step, and in
the exported graph, without a projection hook the training loop could forget.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "symmetric_pad",
    "SymmetricConv2d",
    "SRMConv2d",
    "BayarConv2d",
    "ForensicConv",
    "OutlierTransform",
    "PixelAttention",
    "pixel_attention_reference",
    "AttentionFeedForward",
    "tf1_bilinear_resize",
]


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad H and W by ``pad`` in TF's 'SYMMETRIC' mode (edge pixel repeated: c b a | a b c).

    This is the reference's padding (ManTra-Net's Conv2DSymPadding). torch has no such
    F.pad mode and 'reflect' skips the edge pixel, so the border is assembled from 1-pixel
    slices in mirrored order: plain Slice + Concat in ONNX, valid for any size >= pad.
    """
    if pad == 0:
        return x
    if pad == 1:
        # One pixel of symmetric padding is edge replication: a single ONNX Pad(mode=edge).
        return F.pad(x, (1, 1, 1, 1), mode="replicate")
    # Indices count from either end, never from a traced size, so the graph stays dynamic.
    top = [x[..., i : i + 1, :] for i in reversed(range(pad))]
    bottom = [x[..., -1 - i : (-i or None), :] for i in range(pad)]
    x = torch.cat(top + [x] + bottom, dim=-2)
    left = [x[..., :, i : i + 1] for i in reversed(range(pad))]
    right = [x[..., :, -1 - i : (-i or None)] for i in range(pad)]
    return torch.cat(left + [x] + right, dim=-1)


class SymmetricConv2d(nn.Conv2d):
    """'same' convolution with symmetric padding (stride 1, odd kernel)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)
        self.pad = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(symmetric_pad(x, self.pad))


def _srm_kernels() -> torch.Tensor:
    """The three 5x5 SRM high-pass kernels of ManTra-Net (Fridrich & Kodovsky's rich model)."""
    srm1 = torch.zeros(5, 5)
    srm1[1:-1, 1:-1] = torch.tensor([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]])
    srm1 /= 4.0
    srm2 = torch.tensor(
        [
            [-1.0, 2.0, -2.0, 2.0, -1.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-2.0, 8.0, -12.0, 8.0, -2.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-1.0, 2.0, -2.0, 2.0, -1.0],
        ]
    ) / 12.0
    srm3 = torch.zeros(5, 5)
    srm3[2, 1:-1] = torch.tensor([1.0, -2.0, 1.0])
    srm3 /= 2.0
    return torch.stack([srm1, srm2, srm3])


class SRMConv2d(nn.Module):
    """Fixed SRM high-pass residuals: 3 kernels on each of the 3 colour channels = 9 outputs.

    Output order as the reference: (srm1 on R, G, B), (srm2 on R, G, B), (srm3 on R, G, B).
    The kernel is a buffer, not a parameter: no optimiser can move it.
    """

    out_channels = 9

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(9, 3, 5, 5)
        for k, srm in enumerate(_srm_kernels()):
            for ch in range(3):
                weight[3 * k + ch, ch] = srm
        self.register_buffer("weight", weight)

    def forward(self, x_padded: torch.Tensor) -> torch.Tensor:
        """``x_padded``: input already padded by 2 (shared with the sibling kernels)."""
        return F.conv2d(x_padded, self.weight)


class BayarConv2d(nn.Module):
    """Bayar & Stamm's constrained convolution: centre tap -1, the other taps sum to 1.

    The constraint is a projection of the raw parameter applied in every forward (as the
    reference does), per (output, input) kernel: zero the centre, divide by the sum of
    the remaining taps, set the centre to -1. ``kernel`` is the constrained weight.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, kernel_size: int = 5):
        super().__init__()
        self.kernel_size = kernel_size
        # Positive init keeps the tap sums far from zero at the start (the division
        # blows up near zero); the constraint, not the init, defines the filter.
        self.raw = nn.Parameter(torch.rand(out_channels, in_channels, kernel_size, kernel_size) + 0.5)
        mask = torch.ones(kernel_size, kernel_size)
        mask[kernel_size // 2, kernel_size // 2] = 0.0
        self.register_buffer("off_centre", mask)

    @property
    def kernel(self) -> torch.Tensor:
        taps = self.raw * self.off_centre
        taps = taps / taps.sum(dim=(-2, -1), keepdim=True)
        return taps - (1.0 - self.off_centre)

    def forward(self, x_padded: torch.Tensor) -> torch.Tensor:
        """``x_padded``: input already padded by kernel_size // 2."""
        return F.conv2d(x_padded, self.kernel)


class ForensicConv(nn.Module):
    """ManTra-Net's CombinedConv2D: plain 5x5 + fixed SRM + Bayar 5x5, no bias, ReLU.

    Channels out = plain + 9 + bayar (4 + 9 + 3 = 16 in the reference), concatenated in
    that order. One symmetric pad is shared by the three branches.
    """

    def __init__(self, plain: int = 4, bayar: int = 3, in_channels: int = 3):
        super().__init__()
        self.plain = nn.Conv2d(in_channels, plain, 5, bias=False)
        self.srm = SRMConv2d()
        self.bayar = BayarConv2d(in_channels, bayar, 5)
        self.out_channels = plain + SRMConv2d.out_channels + bayar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = symmetric_pad(x, 2)
        return F.relu(torch.cat([self.plain(x), self.srm(x), self.bayar(x)], dim=1))


class OutlierTransform(nn.Module):
    """1x1 conv without bias whose kernel has unit L2 norm over its input axis.

    The reference uses Keras' ``unit_norm(axis=-2)`` on a (1, 1, in, out) kernel: each
    output channel's vector of input weights has norm 1. Normalised in forward.
    """

    def __init__(self, in_channels: int, out_channels: int = 32):
        super().__init__()
        self.raw = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        nn.init.kaiming_uniform_(self.raw, a=5**0.5)

    @property
    def kernel(self) -> torch.Tensor:
        return self.raw / self.raw.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel)


def _neighbour_offsets(dilation: int) -> list[tuple[int, int]]:
    """The 9 offsets of a dilated 3x3 neighbourhood in row-major order (neighbour n)."""
    return [(dy * dilation, dx * dilation) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


class PixelAttention(nn.Module):
    """SPAN's pixel-attention block at one dilation (the attention half; the residual
    feed-forward is :class:`AttentionFeedForward`).

    Per pixel p: q = Wq x_p; for neighbour n at offset o_n: k_n = Wk_n x_{p+o_n},
    v_n = Wv_n x_{p+o_n} (group n of a D->9D 1x1 conv); logit_n = mask_n * (q . k_n) / 8;
    a = softmax over the 9 logits; out = x_p + sum_n a_n v_n.
    Neighbours outside the image: the reference zero-pads K and V and multiplies the
    logits by a validity mask, so such a neighbour has logit exactly 0 (it still takes
    exp(0) of the softmax mass) and value 0.

    Cheaper exact formulation. The projections are linear and bias-free, so they move
    to the side that is not shifted:
        q . (Wk_n x_{p+o}) = ((Wk_n^T Wq) x_p) . x_{p+o}
        sum_n a_n Wv_n x_{p+o_n} = sum_n Wv_n (a_n x_{p+o_n})
    Only x itself (D channels) is zero-padded, once; neighbour n is a slice of it (a view
    in torch, one Slice in ONNX), used at once and dropped. Neither K nor V (9D channels
    each) nor any stack of 9 shifted copies is ever built; the multiply-adds are the
    same as the reference's. A zero-padded x gives exactly the zero K and V of the
    reference outside the image, so the masked logit (0) and value (0) are reproduced
    without a mask tensor.
    """

    def __init__(self, dim: int = 32, dilation: int = 1):
        super().__init__()
        self.dim = dim
        self.dilation = dilation
        self.query = nn.Conv2d(dim, dim, 1, bias=False)
        self.key = nn.Conv2d(dim, 9 * dim, 1, bias=False)
        self.value = nn.Conv2d(dim, 9 * dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, dim = self.dilation, self.dim
        # key_on_query[n] = Wk_n^T Wq: maps x_p to the vector dotted with neighbour n's x.
        wk = self.key.weight.reshape(9, dim, dim)
        key_on_query = torch.matmul(wk.transpose(1, 2), self.query.weight.reshape(dim, dim))
        wv = self.value.weight.reshape(9, dim, dim, 1, 1)
        padded = F.pad(x, (d, d, d, d))
        offsets = _neighbour_offsets(d)

        def neighbour(oy: int, ox: int) -> torch.Tensor:
            # Window of the padded map seen from offset (oy, ox); bounds count from both
            # ends so no traced size is baked into the exported graph.
            return padded[:, :, d + oy : (oy - d) or None, d + ox : (ox - d) or None]

        # The channel sum of each dot product is a 1x1 conv with a kernel of 1/8 (the
        # reference's scale): one GEMM in ONNX Runtime, faster than ReduceSum over axis 1.
        dot_and_scale = torch.full((1, dim, 1, 1), 0.125, dtype=x.dtype, device=x.device)
        logits = torch.cat(
            [
                F.conv2d(F.conv2d(x, key_on_query[n, :, :, None, None]) * neighbour(oy, ox), dot_and_scale)
                for n, (oy, ox) in enumerate(offsets)
            ],
            dim=1,
        )
        weights = torch.softmax(logits, dim=1)
        out = x
        for n, (oy, ox) in enumerate(offsets):
            out = out + F.conv2d(weights[:, n : n + 1] * neighbour(oy, ox), wv[n])
        return out


def pixel_attention_reference(x: torch.Tensor, block: PixelAttention) -> torch.Tensor:
    """Literal, slow transcription of the reference formulation, for tests only.

    Zero-pad K and V, build the validity mask by padding a tensor of ones, stack all 9
    shifted copies, multiply the logits by the mask, scale by 1/8, softmax over the 9.
    """
    d, dim = block.dilation, block.dim
    n_, _, h, w = x.shape
    q = F.conv2d(x, block.query.weight)
    k = F.pad(F.conv2d(x, block.key.weight), (d, d, d, d))
    v = F.pad(F.conv2d(x, block.value.weight), (d, d, d, d))
    mask = F.pad(torch.ones(n_, 1, h, w, dtype=x.dtype), (d, d, d, d))
    ks, vs, ms = [], [], []
    for n, (oy, ox) in enumerate(_neighbour_offsets(d)):
        ys, xs = slice(d + oy, d + oy + h), slice(d + ox, d + ox + w)
        ks.append(k[:, n * dim : (n + 1) * dim, ys, xs])
        vs.append(v[:, n * dim : (n + 1) * dim, ys, xs])
        ms.append(mask[:, :, ys, xs])
    ks, vs, ms = torch.stack(ks, 1), torch.stack(vs, 1), torch.stack(ms, 1)  # N,9,C,H,W
    logits = (q.unsqueeze(1) * ks).sum(dim=2, keepdim=True) * ms / 8.0
    weights = torch.softmax(logits, dim=1)
    return x + (weights * vs).sum(dim=1)


class AttentionFeedForward(nn.Module):
    """The residual feed-forward after each attention: 3x3 convs D->D->2D->D, ReLU between."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(dim, 2 * dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * dim, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def _resize_axis(x: torch.Tensor, out_size: torch.Tensor | int, axis: int) -> torch.Tensor:
    """TF1 bilinear along one axis: src = dst * in/out, no half-pixel shift, no antialias."""
    in_size = torch._shape_as_tensor(x)[axis]
    if not isinstance(out_size, torch.Tensor):
        out_size = torch.tensor(out_size, dtype=torch.int64)
    scale = in_size.to(torch.float32) / out_size.to(torch.float32)
    src = torch.arange(out_size, dtype=torch.float32, device=x.device) * scale
    lo = src.floor()
    frac = src - lo
    lo = lo.to(torch.int64)
    hi = torch.minimum(lo + 1, in_size - 1)
    a = torch.index_select(x, axis, lo)
    b = torch.index_select(x, axis, hi)
    shape = [1] * x.dim()
    shape[axis] = -1
    frac = frac.reshape(shape)
    return a + (b - a) * frac


def tf1_bilinear_resize(
    x: torch.Tensor, size: tuple[int, int] | tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Resize N,C,H,W to ``size`` as TF1's ``resize_bilinear(align_corners=False)``.

    torch's and ONNX's built-in bilinear use half-pixel centres, so this is written out as
    two gathers and a lerp per axis; torch and ONNX Runtime then compute the same thing.
    ``size`` may hold traced 0-d int64 tensors (output size taken from another input).
    """
    x = _resize_axis(x, size[0], 2)
    return _resize_axis(x, size[1], 3)
