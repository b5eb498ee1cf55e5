"""Contextual attention (DeepFill v1), here comparing each position with the rest of the image.

Yu, Lin, Yang, Shen, Lu, Huang, "Generative Image Inpainting with Contextual Attention",
CVPR 2018. https://arxiv.org/abs/1801.07892

DeepFill fills a hole by matching each foreground patch f against the background
patches b and rebuilding it from them:

    s_{x,y,x',y'} = < f_{x,y} / ||f_{x,y}||, b_{x',y'} / ||b_{x',y'}|| >   (normalised cross-correlation)
    s*            = softmax over (x', y') of (lambda s)                     (lambda = 10)
    output        = sum over (x', y') of s* b_{x',y'}                        (deconvolution by the raw patches)

Matching runs on the map down-scaled by the rate r (paper: 2) with 3x3 patches; the
reconstruction uses the full-resolution 2r x 2r patches around each matched position,
overlapping by half, so every pixel is covered by 2 x 2 of them and their sum is divided
by 4 (DeepFill's deconvolution).

Here there is no hole: every position is foreground, and its background is every other
position of the image (its own patch, which would match itself perfectly, is excluded).
The reconstruction says what the rest of the image predicts a position to look like; the
block returns x + gamma * (x - reconstruction), gamma one learned scale per channel, zero
at the start (as DANet's alpha): what the rest of the image does not explain. The
paper's attention propagation (a 3x3 fusion of the score map) is left out.

Reach: every position, so a SPAN slot's dilation is accepted and ignored. Down-scaling:
r x r average pooling of the map zero-padded to a multiple of r.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContextualAttention", "CA"]

EXCLUDED = -1e4  # logit of a position's own patch: exp() of it is exactly 0 in float32


class ContextualAttention(nn.Module):
    def __init__(self, dim: int, *, rate: int = 2, softmax_scale: float = 10.0, dilation: int = 1):
        super().__init__()
        if rate < 2 or rate % 2:
            raise ValueError(f"rate must be even (the 2r patches overlap by half), not {rate}")
        self.rate = rate
        self.softmax_scale = softmax_scale
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def match(self, x: torch.Tensor) -> torch.Tensor:
        """Attention of each low-resolution position over the others: N x L x L (rows sum to 1)."""
        r = self.rate
        low = F.avg_pool2d(F.pad(x, (0, r - 1, 0, r - 1)), r)  # N x C x h x w, h = ceil(H / r)
        patches = F.normalize(F.unfold(low, 3, padding=1), dim=1, eps=1e-4)  # N x 9C x L: zero-padded 3x3 patches
        similarity = torch.bmm(patches.transpose(1, 2), patches)  # N x L x L
        positions = torch.arange(similarity.shape[-1], device=x.device)
        own = positions[:, None] == positions[None, :]
        return torch.softmax(torch.where(own, EXCLUDED, self.softmax_scale * similarity), dim=-1)

    def reconstruct(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Overlap-add of the 2r x 2r raw patches weighted by ``attention``, cropped to x's size.

        With the map padded by r/2, the raw patch of low-res position j is the 2 x 2 group of
        r x r blocks starting at block j; its quadrant q is block j + q, which lands on block
        i + q of the output for foreground position i. So output block m is
        sum_q sum_j attention[m - q, j] block[j + q] / 4 (m - q inside the grid).
        """
        r, s = self.rate, self.rate // 2
        n, c, height, width = x.shape
        blocks_h, blocks_w = (height + r - 1) // r + 1, (width + r - 1) // r + 1
        padded = F.pad(x, (s, blocks_w * r - width - s, s, blocks_h * r - height - s))
        blocks = F.pixel_unshuffle(padded, r)  # N x C r^2 x (h + 1) x (w + 1)
        total = 0
        for qy in (0, 1):
            for qx in (0, 1):
                source = blocks[:, :, qy : qy - 1 or None, qx : qx - 1 or None]  # block j + q for every j
                part = torch.bmm(source.flatten(2), attention.transpose(1, 2)).reshape(source.shape)
                total = total + F.pad(part, (qx, 1 - qx, qy, 1 - qy))  # to output block i + q
        out = F.pixel_shuffle(total / 4, r)
        return out[:, :, s : s + height, s : s + width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction = self.reconstruct(x, self.match(x))
        return x + self.gamma * (x - reconstruction)


CA = ContextualAttention
