"""DANet's position attention module (PAM).

Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation",
CVPR 2019. https://arxiv.org/abs/1809.02983

With B, C (C/8 channels) and D (C channels) 1x1 convolutions of the input A:

    s_ji = exp(B_i . C_j) / sum_i exp(B_i . C_j)   (how much position i matters to position j)
    E_j  = alpha * sum_i s_ji D_i + A_j              (alpha learned, zero at the start)

Reach: every position, so a SPAN slot's dilation is accepted and ignored. One deviation,
for cost: the paper's i runs over all H x W positions, an (HW)^2 map (10 GB for SPAN's
224 x 224 grid). With ``kv_stride`` s > 1, B and D are taken from the input average-pooled
over s x s windows every s pixels (padding s // 2, so any size gives at least one window):
each position still sees the whole image, at 1/s^2 of the positions. s = 1 is the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PositionAttention", "PAM", "pooled_context"]


def pooled_context(x: torch.Tensor, stride: int) -> torch.Tensor:
    """x average-pooled over stride x stride windows every stride pixels (the map itself at 1)."""
    if stride == 1:
        return x
    return F.avg_pool2d(x, stride, stride=stride, padding=stride // 2, count_include_pad=False)


class PositionAttention(nn.Module):
    def __init__(self, dim: int, *, reduction: int = 8, kv_stride: int = 1, dilation: int = 1):
        super().__init__()
        inner = max(1, dim // reduction)
        self.kv_stride = kv_stride
        self.conv_b = nn.Conv2d(dim, inner, 1)
        self.conv_c = nn.Conv2d(dim, inner, 1)
        self.conv_d = nn.Conv2d(dim, dim, 1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = pooled_context(x, self.kv_stride)
        query = self.conv_c(x).flatten(2)  # N x C' x HW: C_j, j = the position being updated
        key = self.conv_b(context).flatten(2)  # N x C' x L: B_i
        value = self.conv_d(context).flatten(2)  # N x C x L: D_i
        weights = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # N x HW x L, rows sum to 1
        attended = torch.bmm(value, weights.transpose(1, 2))  # N x C x HW
        return x + self.alpha * attended.reshape(x.shape)


PAM = PositionAttention
