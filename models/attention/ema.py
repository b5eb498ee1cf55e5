"""EMA: expectation-maximisation attention (EMANet).

Li, Zhong, Wu, Yang, Lin, Liu, "Expectation-Maximization Attention Networks for Semantic
Segmentation", ICCV 2019. https://arxiv.org/abs/1907.13426

X = the pixels after a 1x1 convolution (HW x C); mu = K bases (K x C), from a learned
initial set mu(0); T iterations of

    E-step:  z_nk = exp(lambda x_n . mu_k) / sum_j exp(lambda x_n . mu_j)    (softmax over the bases)
    M-step:  mu_k = sum_n z_nk x_n / sum_n z_nk,   then mu_k / ||mu_k||       (L2Norm, as the paper)

then the reconstruction X~ = Z mu (each pixel rebuilt from the K bases), a 1x1
convolution, and the residual: out = x + W_out X~. mu(0) is not learned by gradient:
during training it follows the batch's final bases by a moving average (momentum 0.9),
as the paper prescribes. lambda = 1, K = 64, T = 3 (the paper's training setting).
The official code's batch norm and ReLUs around the block are left out (SPAN's features
are signed and its slot has no batch norm); the iterations are differentiated through.
Reach: every position (the bases summarise the whole image), so a SPAN slot's dilation
is accepted and ignored.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExpectationMaximizationAttention", "EMA", "em_bases"]


def em_bases(features: torch.Tensor, bases: torch.Tensor, iterations: int, temperature: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run EM: features N x C x L, bases N x C x K -> (responsibilities N x L x K, bases N x C x K)."""
    for _ in range(iterations):
        responsibilities = torch.softmax(temperature * torch.bmm(features.transpose(1, 2), bases), dim=2)
        weights = responsibilities / (1e-6 + responsibilities.sum(dim=1, keepdim=True))
        bases = F.normalize(torch.bmm(features, weights), dim=1, eps=1e-6)
    return responsibilities, bases


class ExpectationMaximizationAttention(nn.Module):
    def __init__(
        self, dim: int, *, bases: int = 64, iterations: int = 3, momentum: float = 0.9, temperature: float = 1.0,
        dilation: int = 1,
    ):
        super().__init__()
        self.iterations = iterations
        self.momentum = momentum
        self.temperature = temperature
        self.conv_in = nn.Conv2d(dim, dim, 1)
        self.conv_out = nn.Conv2d(dim, dim, 1, bias=False)
        initial = torch.randn(1, dim, bases) * math.sqrt(2.0 / bases)
        self.register_buffer("mu", F.normalize(initial, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv_in(x).flatten(2)  # N x C x HW
        responsibilities, bases = em_bases(
            features, self.mu.expand(features.shape[0], -1, -1), self.iterations, self.temperature
        )
        if self.training:
            with torch.no_grad():  # a new tensor, not in place: this forward's graph still holds the old one
                mean = bases.mean(dim=0, keepdim=True)
                self.mu = F.normalize(self.momentum * self.mu + (1 - self.momentum) * mean, dim=1)
        reconstruction = torch.bmm(bases, responsibilities.transpose(1, 2))  # N x C x HW
        return x + self.conv_out(reconstruction.reshape(x.shape))


EMA = ExpectationMaximizationAttention
