"""ECA: efficient channel attention.

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks", CVPR 2020. https://arxiv.org/abs/1910.03151

    y_i     = mean over pixels of x_i                        (global average pooling)
    w_i     = sigmoid(sum_{j=1..k} a_j y_{i + j - (k+1)/2})  (one 1-D conv shared by all channels,
                                                              zero beyond the first and last channel)
    out     = x * w
    k       = |log2(C) / gamma + b / gamma|_odd, gamma = 2, b = 1 (nearest odd number, at least 3)

Reach: none in space (one weight per channel for the whole image); a SPAN slot's dilation
is accepted and ignored, so all five slots are the same kind of block.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EfficientChannelAttention", "ECA", "eca_kernel_size"]


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """The paper's adaptive kernel size: |log2(C)/gamma + beta/gamma| rounded to odd (as timm: at least 3)."""
    t = int(abs(math.log2(channels) / gamma + beta / gamma))
    return max(t if t % 2 else t + 1, 3)


class EfficientChannelAttention(nn.Module):
    def __init__(self, dim: int, *, gamma: float = 2.0, beta: float = 1.0, dilation: int = 1):
        super().__init__()
        self.kernel_size = eca_kernel_size(dim, gamma, beta)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)).unsqueeze(1)  # N x 1 x C: the channels as a 1-D signal
        weights = torch.sigmoid(self.conv(pooled)).squeeze(1)
        return x * weights[:, :, None, None]


ECA = EfficientChannelAttention
