"""External attention: two small learned memories instead of self-attention.

Guo, Liu, Mu, Hu, "Beyond Self-attention: External Attention using Two Linear Layers for
Visual Tasks", IEEE TPAMI 2022. https://arxiv.org/abs/2105.02358

On the pixels F (HW x C), with memories M_k and M_v of S units (S x C):

    a~_ij = (F M_k^T)_ij
    a^_ij = exp(a~_ij) / sum_k exp(a~_kj)     softmax over the pixels, per memory unit
    a_ij  = a^_ij / sum_k a^_ik               then l1 over the memory units, per pixel
    EA(F) = A M_v

Used as EANet uses it, with a residual: out = F + EA(F) (the extra 1x1 convolutions of
its segmentation head are left out). Reach: every position (the softmax runs over the
whole image), so a SPAN slot's dilation is accepted and ignored.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ExternalAttention", "EA"]


class ExternalAttention(nn.Module):
    def __init__(self, dim: int, *, memory_units: int = 64, dilation: int = 1):
        super().__init__()
        self.memory_key = nn.Conv1d(dim, memory_units, 1, bias=False)  # M_k
        self.memory_value = nn.Conv1d(memory_units, dim, 1, bias=False)  # M_v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        affinity = self.memory_key(x.flatten(2))  # N x S x HW
        weights = torch.softmax(affinity, dim=-1)
        weights = weights / (1e-9 + weights.sum(dim=1, keepdim=True))  # the paper's double normalisation
        return x + self.memory_value(weights).reshape(x.shape)


EA = ExternalAttention
