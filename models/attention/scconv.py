"""SCConv: self-calibrated convolution (SCNet).

Liu, Hou, Cheng, Wang, Feng, "Improving Convolutional Networks with Self-Calibrated
Convolutions", CVPR 2020. https://mmcheng.net/scconv/

The input X is split along channels into X1 and X2 (C/2 each); K1..K4 are 3x3
convolutions C/2 -> C/2 (no bias, as the equations write them):

    T1  = AvgPool_r(X1)
    X1' = Up(T1 * K2)                    (bilinear, back to X1's size)
    Y1' = (X1 * K3) . sigmoid(X1 + X1')  (self-calibration)
    Y1  = Y1' * K4
    Y2  = X2 * K1
    Y   = [Y1, Y2]

The authors' code adds a batch norm after each convolution; these follow the equations.
Reach: the calibration branch's down-sampling rate r (paper: 4). A SPAN slot passes its
dilation as r, so the calibration of slot i is computed on the grid pooled d-fold (d = 1:
no pooling). The pooling windows are r x r every r pixels, padded by r // 2 and averaged
over the pixels inside the map, so a map smaller than r still gives one value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention.position import pooled_context

__all__ = ["SelfCalibratedConv", "SCConv"]


class SelfCalibratedConv(nn.Module):
    def __init__(self, dim: int, *, pooling_rate: int = 4, dilation: int | None = None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"SCConv splits the channels in two halves; {dim} is odd")
        half = dim // 2
        self.pooling_rate = pooling_rate if dilation is None else dilation
        self.k1, self.k2, self.k3, self.k4 = (nn.Conv2d(half, half, 3, padding=1, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        calibration = self.k2(pooled_context(x1, self.pooling_rate))
        if self.pooling_rate > 1:
            calibration = F.interpolate(calibration, size=x1.shape[-2:], mode="bilinear", align_corners=False)
        y1 = self.k4(self.k3(x1) * torch.sigmoid(x1 + calibration))
        return torch.cat([y1, self.k1(x2)], dim=1)


SCConv = SelfCalibratedConv
