"""DANet's channel attention module (CAM).

Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation",
CVPR 2019. https://arxiv.org/abs/1809.02983

With A reshaped to C x HW (row A_i: channel i over all positions):

    x_ji = exp(A_i . A_j) / sum_i exp(A_i . A_j)   (how much channel i matters to channel j)
    E_j  = beta * sum_i x_ji A_i + A_j              (beta learned, zero at the start)

As the paper's equations write it; the authors' code softmaxes max(energy) - energy
instead, which this block does not copy. Reach: every position, so a SPAN slot's dilation
is accepted and ignored.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChannelAttention", "CAM"]


class ChannelAttention(nn.Module):
    def __init__(self, dim: int | None = None, *, dilation: int = 1):
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # N x C x HW
        weights = torch.softmax(torch.bmm(flat, flat.transpose(1, 2)), dim=-1)  # N x C x C, row j over i
        return x + self.beta * torch.bmm(weights, flat).reshape(x.shape)


CAM = ChannelAttention
