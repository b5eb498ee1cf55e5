"""A DeepFill-style inpainting generator (Yu et al.: v1 "Generative Image Inpainting with
Contextual Attention", CVPR 2018; v2 "Free-Form Image Inpainting with Gated Convolution",
ICCV 2019), small enough to train on a CPU.

- :class:`GatedConv2d`: v2's gated convolution, ``ELU(feature) * sigmoid(gate)``.
- :class:`ContextualAttention`: v1's contextual attention, batched as matrix products
  (the per-image convolution form of the paper's code is in tests/test_deepfill.py and
  must give the same numbers).
- :class:`DeepFillGenerator`: v2's coarse-to-fine generator: a coarse network, then a
  refinement network with a dilated-convolution branch and a contextual-attention branch.
- :class:`PatchDiscriminator`: v2's SN-PatchGAN, hinge loss on every output position.

Images enter as float 0..255 RGB (N×3×H×W) with a mask N×1×H×W (1 = hole); H and W must
be multiples of 8 (two stride-2 stages, then attention matching at half that resolution).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- gated convolution

class GatedConv2d(nn.Module):
    """One convolution producing 2×out channels, split into feature and gate:
    ``ELU(feature) * sigmoid(gate)`` (v2's ``gen_conv``); ``activation=False`` for the
    output layer, which is a plain convolution."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1,
                 activation: bool = True):
        super().__init__()
        self.activation = activation
        pad = dilation * (k - 1) // 2
        self.conv = nn.Conv2d(cin, 2 * cout if activation else cout, k, stride, pad, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if not self.activation:
            return y
        feature, gate = y.chunk(2, dim=1)
        return F.elu(feature) * torch.sigmoid(gate)


class GatedUp(nn.Sequential):
    """v2's ``gen_deconv``: nearest ×2 upsampling, then a gated 3×3 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), GatedConv2d(cin, cout, 3))


# ----------------------------------------------------------------------------- contextual attention

def _patches3(x: torch.Tensor) -> torch.Tensor:
    """3×3 zero-padded patches around every position: N×C×H×W -> N×(H·W)×(C·9)."""
    n, c, h, w = x.shape
    p = F.pad(x, (1, 1, 1, 1))
    cols = [p[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    return torch.stack(cols, 2).reshape(n, c * 9, h * w).transpose(1, 2)


def _raw_patches(b: torch.Tensor, rate: int) -> torch.Tensor:
    """The (2·rate)² background patches, stride ``rate``, 'same' padding, one per matching
    position: N×C×H×W -> N×(H/rate·W/rate)×(C·(2·rate)²), in the channel-major order that
    :func:`_fold_weight` scatters back."""
    n, c, h, w = b.shape
    k, hd, wd = 2 * rate, h // rate, w // rate
    p = F.pad(b, (rate // 2, rate - rate // 2, rate // 2, rate - rate // 2))
    cols = [p[:, :, dy:dy + rate * hd:rate, dx:dx + rate * wd:rate] for dy in range(k) for dx in range(k)]
    return torch.stack(cols, 2).reshape(n, c * k * k, hd * wd).transpose(1, 2)


def _fold_weight(c: int, rate: int, device=None, dtype=None) -> torch.Tensor:
    """A fixed one-hot kernel that makes ``conv_transpose2d(groups=c)`` paste each
    (2·rate)² patch back at its place: the paper's reconstruction by transposed convolution
    with the background patches as kernels, written as (attention @ patches) then this fold."""
    k = 2 * rate
    eye = torch.eye(k * k, device=device, dtype=dtype).reshape(k * k, 1, k, k)
    return eye.repeat(c, 1, 1, 1)  # (c·k², 1, k, k), groups = c


def _fuse(scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Attention propagation: the (foreground × background) score image convolved with a
    3×3 identity kernel, along x, then (after swapping x/y in both indices) along y, as
    v1's ``fuse`` step. scores: N×L×L with L = h·w, row-major positions."""
    def diag3(s: torch.Tensor) -> torch.Tensor:
        p = F.pad(s, (1, 1, 1, 1))
        return p[:, :-2, :-2] + p[:, 1:-1, 1:-1] + p[:, 2:, 2:]

    n = scores.shape[0]
    s = diag3(scores)
    s = s.reshape(n, h, w, h, w).permute(0, 2, 1, 4, 3).reshape(n, h * w, h * w)
    s = diag3(s)
    return s.reshape(n, w, h, w, h).permute(0, 2, 1, 4, 3).reshape(n, h * w, h * w)


class ContextualAttention(nn.Module):
    """DeepFill v1's contextual attention on feature maps f (foreground) and b (background).

    1. f, b and the mask are subsampled by ``rate``; every 3×3 background patch is
       L2-normalised and matched against every foreground patch (normalised cross-correlation).
    2. The scores are propagated with a 3×3 identity kernel (``fuse``).
    3. Background patches touching the hole are masked out, scores pass a softmax with
       ``scale`` and are masked again, so a hole never borrows from a hole.
    4. The output is the transposed convolution of the full-resolution (2·rate)² background
       patches by the attention, divided by 4 (the paper's overlap normalisation).
    """

    def __init__(self, rate: int = 2, scale: float = 10.0, fuse: bool = True, channels: int | None = None):
        super().__init__()
        self.rate, self.scale, self.fuse = rate, scale, fuse
        # with the width known up front the fold kernel is a constant (the ONNX exporter needs that)
        fold = _fold_weight(channels, rate) if channels else None
        self.register_buffer("fold", fold, persistent=False)

    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = b.shape
        r = self.rate
        raw = _raw_patches(b, r)                                    # N×L×(C·4r²)
        # a cell counts as hole if any of its pixels is one (max-pool), so thin strokes are never missed
        fd, bd, md = f[:, :, ::r, ::r], b[:, :, ::r, ::r], F.max_pool2d(mask, r)
        hd, wd = bd.shape[2], bd.shape[3]
        wi = _patches3(bd)                                          # N×L×(C·9)
        wi = wi / torch.sqrt((wi * wi + 1e-4).sum(-1, keepdim=True))  # the paper's escape_NaN
        scores = _patches3(fd) @ wi.transpose(1, 2)                 # N×Lf×Lb
        if self.fuse:
            scores = _fuse(scores, hd, wd)
        valid = (_patches3(md).sum(-1) == 0).to(scores.dtype)[:, None, :]  # N×1×Lb: patch free of hole
        attn = torch.softmax(scores * valid * self.scale, dim=-1) * valid
        y = attn @ raw                                              # N×Lf×(C·4r²)
        y = y.transpose(1, 2).reshape(n, c * 4 * r * r, hd, wd)
        weight = self.fold if self.fold is not None else _fold_weight(c, r, y.device, y.dtype)
        return F.conv_transpose2d(y, weight, stride=r, padding=r // 2, groups=c) / 4.0


# ----------------------------------------------------------------------------- generator

@dataclass(frozen=True)
class DeepFillConfig:
    cnum: int = 16          # base width (v2 uses 48; 16 trains on a CPU in minutes)
    attention_rate: int = 2
    attention_scale: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


def _dilated(c: int) -> list[nn.Module]:
    return [GatedConv2d(c, c, 3, dilation=d) for d in (2, 4, 8, 16)]


class CoarseNet(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            GatedConv2d(5, c, 5), GatedConv2d(c, 2 * c, 3, 2), GatedConv2d(2 * c, 2 * c, 3),
            GatedConv2d(2 * c, 4 * c, 3, 2), GatedConv2d(4 * c, 4 * c, 3), GatedConv2d(4 * c, 4 * c, 3),
            *_dilated(4 * c),
            GatedConv2d(4 * c, 4 * c, 3), GatedConv2d(4 * c, 4 * c, 3),
            GatedUp(4 * c, 2 * c), GatedConv2d(2 * c, 2 * c, 3), GatedUp(2 * c, c),
            GatedConv2d(c, c // 2, 3), GatedConv2d(c // 2, 3, 3, activation=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RefineNet(nn.Module):
    """Two branches at quarter resolution (dilated convolutions; contextual attention), concatenated and decoded."""

    def __init__(self, c: int, rate: int, scale: float):
        super().__init__()
        self.conv_branch = nn.Sequential(
            GatedConv2d(5, c, 5), GatedConv2d(c, c, 3, 2), GatedConv2d(c, 2 * c, 3),
            GatedConv2d(2 * c, 2 * c, 3, 2), GatedConv2d(2 * c, 4 * c, 3), GatedConv2d(4 * c, 4 * c, 3),
            *_dilated(4 * c))
        self.attention_in = nn.Sequential(
            GatedConv2d(5, c, 5), GatedConv2d(c, c, 3, 2), GatedConv2d(c, 2 * c, 3),
            GatedConv2d(2 * c, 4 * c, 3, 2), GatedConv2d(4 * c, 4 * c, 3))
        self.attention_pre = nn.Conv2d(4 * c, 4 * c, 3, padding=1)  # v2: a ReLU conv feeds the attention
        self.attention = ContextualAttention(rate, scale, channels=4 * c)
        self.attention_out = nn.Sequential(GatedConv2d(4 * c, 4 * c, 3), GatedConv2d(4 * c, 4 * c, 3))
        self.decoder = nn.Sequential(
            GatedConv2d(8 * c, 4 * c, 3), GatedConv2d(4 * c, 4 * c, 3),
            GatedUp(4 * c, 2 * c), GatedConv2d(2 * c, 2 * c, 3), GatedUp(2 * c, c),
            GatedConv2d(c, c // 2, 3), GatedConv2d(c // 2, 3, 3, activation=False), nn.Tanh())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hallucinated = self.conv_branch(x)
        a = F.relu(self.attention_pre(self.attention_in(x)))
        mask_q = F.max_pool2d(mask, 4)  # the hole at the branches' quarter resolution (any hole pixel counts)
        a = self.attention_out(self.attention(a, a, mask_q))
        return self.decoder(torch.cat([hallucinated, a], 1))


class DeepFillGenerator(nn.Module):
    """Coarse-to-fine inpainting. ``forward(image 0..255, mask {0,1})`` returns
    ``(coarse, refined)`` in -1..1 over the whole frame (the losses want both);
    :meth:`inpaint` returns the composited 0..255 result (known pixels kept)."""

    def __init__(self, config: DeepFillConfig = DeepFillConfig()):
        super().__init__()
        self.config = config
        c = config.cnum
        self.coarse = CoarseNet(c)
        self.refine = RefineNet(c, config.attention_rate, config.attention_scale)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image / 127.5 - 1.0
        known = x * (1 - mask)
        ones = torch.ones_like(mask)
        coarse = self.coarse(torch.cat([known, ones, mask], 1))
        merged = coarse * mask + known
        refined = self.refine(torch.cat([merged, ones, mask], 1), mask)
        return coarse, refined

    def inpaint(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, refined = self(image, mask)
        filled = (refined + 1.0) * 127.5
        return torch.clamp(filled * mask + image * (1 - mask), 0.0, 255.0)

    def checkpoint(self) -> dict:
        return {"config": self.config.to_dict(), "state_dict": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, ckpt: dict | str) -> DeepFillGenerator:
        if not isinstance(ckpt, dict):
            ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = cls(DeepFillConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
        return model


# ----------------------------------------------------------------------------- discriminator

class PatchDiscriminator(nn.Module):
    """SN-PatchGAN: six spectral-normalised 5×5 stride-2 convolutions with leaky ReLU on
    (image, mask); every output position is one real/fake decision."""

    def __init__(self, cnum: int = 16):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        widths = [4, cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
            layers.append(sn(nn.Conv2d(cin, cout, 5, 2, 2)))
            if i < len(widths) - 2:
                layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)

    def forward(self, image_pm1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([image_pm1, mask], 1))


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()
