"""PSA: pyramid split attention (EPSANet).

Zhang, Zu, Lu, Zou, Meng, "EPSANet: An Efficient Pyramid Squeeze Attention Block on
Convolutional Neural Network", ACCV 2022. https://arxiv.org/abs/2105.14447

S = 4 scales with kernels k_i = 3, 5, 7, 9 and groups G_i = 2^((k_i - 1) / 2):

    F_i   = Conv(k_i x k_i, G_i)(X)                     C -> C/S channels each (no bias)
    Z_i   = sigmoid(W1 ReLU(W0 GAP(F_i) + b0) + b1)     SE weights, one SE shared by the scales
    att_i = exp(Z_i) / sum_j exp(Z_j)                   softmax across the scales, per channel
    out   = Cat(F_i * att_i)

Groups must divide both C and C/S; for narrow inputs (SPAN's 32 channels: 8 per scale)
G_i is capped to the largest power of two that does (here 2, 4, 8, 8 instead of
2, 4, 8, 16). Reach: a SPAN slot passes its dilation to the four pyramid convolutions,
so scale i of slot d sees a (d (k_i - 1) + 1)-pixel square.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PyramidSplitAttention", "PSA"]


class PyramidSplitAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        kernels: tuple[int, ...] = (3, 5, 7, 9),
        reduction: int = 16,
        dilation: int = 1,
    ):
        super().__init__()
        scales = len(kernels)
        if dim % scales:
            raise ValueError(f"PSA splits {dim} channels into {scales} scales: not divisible")
        part = dim // scales
        self.groups = tuple(math.gcd(2 ** ((k - 1) // 2), math.gcd(dim, part)) for k in kernels)
        self.pyramid = nn.ModuleList(
            nn.Conv2d(dim, part, k, padding=dilation * (k // 2), dilation=dilation, groups=g, bias=False)
            for k, g in zip(kernels, self.groups)
        )
        self.part = part
        hidden = max(1, part // reduction)
        self.squeeze = nn.Conv2d(part, hidden, 1)
        self.excite = nn.Conv2d(hidden, part, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.stack([conv(x) for conv in self.pyramid], dim=1)  # N x S x C/S x H x W
        scales, part = len(self.pyramid), self.part
        pooled = features.mean(dim=(3, 4)).reshape(-1, part, 1, 1)  # every scale of every image through one SE
        se = torch.sigmoid(self.excite(F.relu(self.squeeze(pooled)))).reshape(-1, scales, part, 1, 1)
        weighted = features * torch.softmax(se, dim=1)
        return weighted.flatten(1, 2)


PSA = PyramidSplitAttention
