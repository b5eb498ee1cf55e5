"""EMSA: efficient multi-head self-attention (ResT).

Zhang, Yang, "ResT: An Efficient Transformer for Visual Recognition", NeurIPS 2021.
https://arxiv.org/abs/2105.13677

On the tokens x (one per pixel, C channels), with k heads of d_k = C / k channels:

    Q        = x Wq
    x'       = LN(DWConv_{s+1, stride s, pad s/2}(x as a C x H x W map))   spatial reduction
    K, V     = x' Wk, x' Wv
    EMSA(x)  = Wp Concat_heads(IN(Softmax(Conv_1x1(Q K^T / sqrt(d_k)))) V)

Conv_1x1 mixes the k heads' attention maps and IN is instance normalisation of each
head's map. The block is used as ResT's blocks use it: out = x + EMSA(LN(x)).
Reach: every position (at 1/s^2 of them as keys), so a SPAN slot's dilation is accepted
and ignored. Defaults are ResT's first stage (s = 8, one head for a 64-channel stage:
d_k = 64; SPAN's 32 channels keep one head).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["EfficientMultiHeadAttention", "EMSA"]


def instance_norm_of_softmax(weights: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """IN (no affine, as torch's InstanceNorm2d) of each head's softmax map over its last two axes.

    Every row of a softmax sums to 1, so the map's mean is exactly 1 / L (L keys). Using that
    instead of a computed mean matters: the map's spread is small, so the rounding of a float32
    mean, divided by it, shifted every output equally (2e-4 apart between torch and ONNX Runtime).
    """
    centred = weights - 1.0 / weights.shape[-1]
    variance = centred.square().mean(dim=(-2, -1), keepdim=True)
    return centred / torch.sqrt(variance + eps)


class EfficientMultiHeadAttention(nn.Module):
    def __init__(self, dim: int, *, num_heads: int = 1, sr_ratio: int = 8, qkv_bias: bool = False, dilation: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{dim} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        # s = 1: no reduction (as ResT's last stage): keys and values from the tokens themselves
        self.reduce = (
            nn.Conv2d(dim, dim, sr_ratio + 1, stride=sr_ratio, padding=sr_ratio // 2, groups=dim)
            if sr_ratio > 1 else None
        )
        self.reduce_norm = nn.LayerNorm(dim) if sr_ratio > 1 else None
        self.key_value = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.head_mix = nn.Conv2d(num_heads, num_heads, 1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        heads = self.num_heads
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # N x HW x C
        query = self.query(tokens).reshape(n, -1, heads, c // heads).transpose(1, 2)  # N x k x HW x d
        if self.reduce is None:
            reduced = tokens
        else:
            grid = tokens.transpose(1, 2).reshape(x.shape)
            reduced = self.reduce_norm(self.reduce(grid).flatten(2).transpose(1, 2))  # N x L x C
        key_value = self.key_value(reduced).reshape(n, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        key, value = key_value[0], key_value[1]  # N x k x L x d each
        logits = self.head_mix(torch.matmul(query, key.transpose(-2, -1)) * self.scale)  # N x k x HW x L
        weights = instance_norm_of_softmax(torch.softmax(logits, dim=-1))
        attended = torch.matmul(weights, value).transpose(1, 2).reshape(n, -1, c)  # N x HW x C
        return x + self.proj(attended).transpose(1, 2).reshape(x.shape)


EMSA = EfficientMultiHeadAttention
