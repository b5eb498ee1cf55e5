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
    that order. The three branches read the same symmetrically padded input, so they run
    as one convolution with their kernels stacked: 16 output channels fill one blocked
    (NCHWc) convolution in ONNX Runtime, where three separate ones each padded 3-9
    channels up to 16 and needed their own layout conversions (3x slower).

    ``input_scale``/``input_offset``: the layer sees ``x * input_scale + input_offset``.
    The affine map is folded into the convolution, conv(s*x + o) = s*conv(x) + o*sum(W),
    exact because symmetric padding copies pixels (a padded pixel maps like any other), so
    Featex feeds 0..255 pixels straight in with no elementwise pass over the full image.
    """

    def __init__(
        self, plain: int = 4, bayar: int = 3, in_channels: int = 3, *, input_scale: float = 1.0, input_offset: float = 0.0
    ):
        super().__init__()
        self.plain = nn.Conv2d(in_channels, plain, 5, bias=False)
        self.srm = SRMConv2d()
        self.bayar = BayarConv2d(in_channels, bayar, 5)
        self.out_channels = plain + SRMConv2d.out_channels + bayar
        self.input_scale = input_scale
        self.input_offset = input_offset

    @property
    def kernel(self) -> torch.Tensor:
        """The stacked kernel: plain, SRM, constrained Bayar (out_channels, 3, 5, 5)."""
        return torch.cat([self.plain.weight, self.srm.weight, self.bayar.kernel])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel
        bias = self.input_offset * kernel.sum(dim=(1, 2, 3)) if self.input_offset else None
        return F.relu(F.conv2d(symmetric_pad(x, 2), kernel * self.input_scale, bias))


class OutlierTransform(nn.Module):
    """1x1 conv without bias whose kernel has unit L2 norm over its input axis.

    The reference uses Keras' ``unit_norm(axis=-2)`` on a (1, 1, in, out) kernel: each
    output channel's vector of input weights has norm 1. Normalised in forward.
    """

    def __init__(self, in_channels: int, out_channels: int = 32):
        super().__init__()
        self.raw = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        nn.init.kaiming_uniform_(self.raw, a=5**0.5)
        # Sums x*x over channels for normalise=True; not state (checkpoints are unchanged).
        self.register_buffer("channel_sum", torch.ones(1, in_channels, 1, 1), persistent=False)

    @property
    def kernel(self) -> torch.Tensor:
        return self.raw / self.raw.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, x: torch.Tensor, *, normalise: bool = False) -> torch.Tensor:
        """The transform of x; with normalise=True, of ``F.normalize(x, dim=1)``, computed as
        ``transform(x) / |x|``.

        The 1x1 conv is linear, so dividing its 32 outputs by each pixel's norm equals
        normalising its wide input first, without a full pass over the wide features. The
        squared norm is a 1x1 conv of x*x with a kernel of ones rather than a ReduceSum
        over channels, so ONNX Runtime keeps the wide tensor in its blocked layout.
        """
        out = F.conv2d(x, self.kernel)
        if not normalise:
            return out
        norm = F.conv2d(x * x, self.channel_sum.to(x.dtype)).sqrt().clamp_min(1e-12)  # F.normalize's eps
        return out / norm


_EXCLUDED = 1e4  # subtracted from an excluded neighbour's logit: exp() of it is 0 in fp32 and bf16


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

    Two formulations of that algebra, chosen by runtime (tests hold both to the literal
    reference):
    - torch (training, eager): neighbours are slices of the zero-padded x (views, free).
    - ONNX export (``forward_blocked``): neighbour n is a one-hot depthwise 3x3 conv with
      dilation d and zero padding, the scale-and-expand of the attention weights is a 1x1
      conv, and the residual starts from the centre neighbour (x itself). Every large
      tensor is then produced by a Conv, so ONNX Runtime keeps the whole attention and
      feed-forward chain in its blocked NCHWc layout; slices of the padded map forced a
      layout conversion around every product (attention + feed-forward 15 % faster in ORT,
      while in torch the depthwise convs are 1.6x slower than the free views).
    """

    def __init__(self, dim: int = 32, dilation: int = 1, *, edges: str = "zero"):
        super().__init__()
        if edges not in ("zero", "exclude"):
            raise ValueError(f"edges must be 'zero' (the reference) or 'exclude', not {edges!r}")
        self.dim = dim
        self.dilation = dilation
        # "zero": the reference, an out-of-image neighbour keeps logit 0 and value 0, so near the
        # border part of the softmax mass goes to nothing and the output is pulled towards 0 (dark
        # map borders). "exclude": such a neighbour gets no weight at all.
        self.edges = edges
        self.query = nn.Conv2d(dim, dim, 1, bias=False)
        self.key = nn.Conv2d(dim, 9 * dim, 1, bias=False)
        self.value = nn.Conv2d(dim, 9 * dim, 1, bias=False)
        # Fixed one-hot kernels of forward_blocked (not state: checkpoints are unchanged).
        # shift[n]: depthwise kernel whose only tap is neighbour n; spread[n]: copies
        # attention weight n onto dim channels.
        shift = torch.zeros(9, dim, 1, 3, 3)
        spread = torch.zeros(9, dim, 9, 1, 1)
        for n in range(9):
            shift[n, :, 0, n // 3, n % 3] = 1.0
            spread[n, :, n] = 1.0
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("spread", spread, persistent=False)

    def _folded_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The kernels both formulations use: key_on_query[n] = Wk_n^T Wq (maps x_p to the vector
        dotted with neighbour n's x), value[n] = Wv_n as a 1x1 conv kernel, and the 1x1 conv whose kernel
        of 1/8 (the reference's scale) sums a dot product's channels (one GEMM in ONNX Runtime,
        faster than ReduceSum over axis 1)."""
        dim = self.dim
        wk = self.key.weight.reshape(9, dim, dim)
        key_on_query = torch.matmul(wk.transpose(1, 2), self.query.weight.reshape(dim, dim))
        value = self.value.weight.reshape(9, dim, dim, 1, 1)
        dot_and_scale = torch.full((1, dim, 1, 1), 0.125, dtype=x.dtype, device=x.device)
        return key_on_query, value, dot_and_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return self.forward_blocked(x)
        d = self.dilation
        key_on_query, wv, dot_and_scale = self._folded_weights(x)
        padded = F.pad(x, (d, d, d, d))
        offsets = _neighbour_offsets(d)

        def neighbour(oy: int, ox: int) -> torch.Tensor:
            # Window of the padded map seen from offset (oy, ox): a view, no copy.
            return padded[:, :, d + oy : (oy - d) or None, d + ox : (ox - d) or None]

        logits = torch.cat(
            [
                F.conv2d(F.conv2d(x, key_on_query[n, :, :, None, None]) * neighbour(oy, ox), dot_and_scale)
                for n, (oy, ox) in enumerate(offsets)
            ],
            dim=1,
        )
        if self.edges == "exclude":
            inside = F.pad(x.new_ones(1, 1, *x.shape[-2:]), (d, d, d, d))
            h, w = x.shape[-2:]
            valid = torch.cat([inside[:, :, d + oy : d + oy + h, d + ox : d + ox + w] for oy, ox in offsets], dim=1)
            logits = logits + (valid - 1.0) * _EXCLUDED
        weights = torch.softmax(logits, dim=1)
        out = x
        for n, (oy, ox) in enumerate(offsets):
            out = out + F.conv2d(weights[:, n : n + 1] * neighbour(oy, ox), wv[n])
        return out

    def forward_blocked(self, x: torch.Tensor) -> torch.Tensor:
        """The same function built from convolutions and elementwise products only (see the
        class docstring): what the ONNX export runs."""
        d, dim = self.dilation, self.dim
        key_on_query, wv, dot_and_scale = self._folded_weights(x)
        neighbours = [F.conv2d(x, self.shift[n], padding=d, dilation=d, groups=dim) for n in range(9)]
        logits = torch.cat(
            [F.conv2d(F.conv2d(x, key_on_query[n, :, :, None, None]) * neighbours[n], dot_and_scale) for n in range(9)],
            dim=1,
        )
        if self.edges == "exclude":
            ones = torch.ones_like(x[:, :1])
            valid = torch.cat([F.conv2d(ones, self.shift[n][:1], padding=d, dilation=d) for n in range(9)], dim=1)
            logits = logits + (valid - 1.0) * _EXCLUDED
        # Softmax over the 9 written out: ORT's Softmax over axis 1 of NCHW transposes twice
        # (4.5 ms per block at 224x224); these elementwise ops take 0.5 ms.
        exp = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        weights = exp / exp.sum(dim=1, keepdim=True)
        out = neighbours[4]  # the centre neighbour is x, exactly (one tap of 1.0)
        for n in range(9):
            out = out + F.conv2d(F.conv2d(weights, self.spread[n]) * neighbours[n], wv[n])
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
    if block.edges == "exclude":  # out-of-image neighbours take no part in the softmax
        logits = logits.masked_fill(ms == 0, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    return x + (weights * vs).sum(dim=1)


class AttentionFeedForward(nn.Module):
    """The residual feed-forward after each attention: 3x3 convs D->D->2D->D, ReLU between."""

    def __init__(self, dim: int = 32, *, padding_mode: str = "zeros"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, padding_mode=padding_mode),
            nn.ReLU(),
            nn.Conv2d(dim, 2 * dim, 3, padding=1, padding_mode=padding_mode),
            nn.ReLU(),
            nn.Conv2d(2 * dim, dim, 3, padding=1, padding_mode=padding_mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def _resize_axis(x: torch.Tensor, out_size: torch.Tensor | int, axis: int) -> torch.Tensor:
    """TF1 bilinear along one axis: src = dst * in/out, no half-pixel shift, no antialias.

    The source coordinate is computed as ONNX Resize ('asymmetric') computes it, dst / (out/in),
    so the exported Resize and this agree to float rounding (TF1 multiplies by in/out: the same
    coordinate, rounded differently, which moved values by up to 1e-4).
    """
    in_size = torch._shape_as_tensor(x)[axis]
    if not isinstance(out_size, torch.Tensor):
        out_size = torch.tensor(out_size, dtype=torch.int64)
    scale = out_size.to(torch.float32) / in_size.to(torch.float32)
    src = torch.arange(out_size, dtype=torch.float32, device=x.device) / scale
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


class _OnnxTf1Resize(torch.autograd.Function):
    """Export-only: tf1_bilinear_resize to a traced size as one ONNX Resize(linear,
    'asymmetric'), which is TF1's coordinate mapping; ORT runs the 1024x768 map upsample in
    1 ms where the traced gathers and lerps took 7 ms. The resize to the fixed working grid
    stays as gathers: their constant indices let ORT prove the grid's shape, which it needs
    to keep the attention in its blocked layout (after a Resize it could not)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: torch.Tensor) -> torch.Tensor:  # size: int64 [h, w]
        return _resize_axis(_resize_axis(x, size[0], 2), size[1], 3)

    @staticmethod
    def symbolic(g, x, size):  # pragma: no cover - runs inside torch.onnx.export only
        shape = g.op("Shape", x)
        batch_channels = g.op(
            "Slice", shape, g.op("Constant", value_t=torch.tensor([0])), g.op("Constant", value_t=torch.tensor([2]))
        )
        sizes = g.op("Concat", batch_channels, size, axis_i=0)
        unused = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))  # roi, scales (export.py omits them)
        return g.op("Resize", x, unused, unused, sizes, mode_s="linear", coordinate_transformation_mode_s="asymmetric")


def tf1_bilinear_resize(
    x: torch.Tensor, size: tuple[int, int] | tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Resize N,C,H,W to ``size`` as TF1's ``resize_bilinear(align_corners=False)``.

    torch's built-in bilinear uses half-pixel centres, so this is two gathers and a lerp per
    axis; to a traced size, the ONNX export emits the equivalent Resize node instead.
    ``size`` may hold traced 0-d int64 tensors (output size taken from another input).
    """
    if torch.onnx.is_in_onnx_export() and all(isinstance(s, torch.Tensor) for s in size):
        return _OnnxTf1Resize.apply(x, torch.stack([s.reshape(()) for s in size]).to(torch.int64))
    x = _resize_axis(x, size[0], 2)
    return _resize_axis(x, size[1], 3)
