"""BAM: bottleneck attention module.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018.
https://arxiv.org/abs/1807.06514

    M(F)  = sigmoid(Mc(F) + Ms(F))              (Mc: N x C x 1 x 1, Ms: N x 1 x H x W, broadcast)
    F'    = F + F * M(F)
    Mc(F) = BN(W1 ReLU(W0 AvgPool(F) + b0) + b1)                     C -> C/r -> C
    Ms(F) = BN(f3_1x1(ReLU(f2_3x3(ReLU(f1_3x3(ReLU(f0_1x1(F))))))))   C -> C/r -> C/r -> C/r -> 1

Reach: the two 3x3 convolutions of the spatial branch are dilated; the paper uses 4, a
SPAN slot passes its own dilation (1, 3, 9, 27, 81), so the spatial branch of slot i sees
a (4 d + 1)-pixel square. The paper's batch norms are kept (one after each branch, as its
equations write them; its code has more): with a batch of 2 the channel branch's
BatchNorm1d normalises over two vectors, a handicap of the design at small batches (and
training needs at least 2 images per batch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BottleneckAttention", "BAM"]


class BottleneckAttention(nn.Module):
    def __init__(self, dim: int, *, reduction: int = 16, dilation: int = 4):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.dilation = dilation
        self.channel_in = nn.Linear(dim, hidden)
        self.channel_out = nn.Linear(hidden, dim)
        self.channel_norm = nn.BatchNorm1d(dim)
        self.spatial_in = nn.Conv2d(dim, hidden, 1)
        self.spatial_mid = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=dilation, dilation=dilation),
            nn.ReLU(),
        )
        self.spatial_out = nn.Conv2d(hidden, 1, 1)
        self.spatial_norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        channel = self.channel_norm(self.channel_out(F.relu(self.channel_in(pooled))))
        spatial = self.spatial_norm(self.spatial_out(self.spatial_mid(F.relu(self.spatial_in(x)))))
        gate = torch.sigmoid(channel[:, :, None, None] + spatial)
        return x + x * gate


BAM = BottleneckAttention
