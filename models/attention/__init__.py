"""Attention blocks for SPAN's five slots, one per file, each a peer of SPAN's own
``PixelAttention`` (models/layers.py): N x C x H x W in, the same shape out, exportable
to ONNX (opset 17) with dynamic height and width.

``build_attention(name, dim=..., dilation=...)`` makes the block a slot uses; ``SpanConfig
.attention`` names it. The factories below set what a slot on SPAN's 224 x 224 working
grid needs beyond the paper's defaults (each says why); the blocks' own defaults are the
papers'.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.attention.bam import BAM, BottleneckAttention
from models.attention.channel import CAM, ChannelAttention
from models.attention.contextual import CA, ContextualAttention
from models.attention.eca import ECA, EfficientChannelAttention
from models.attention.ema import EMA, ExpectationMaximizationAttention
from models.attention.emsa import EMSA, EfficientMultiHeadAttention
from models.attention.external import EA, ExternalAttention
from models.attention.position import PAM, PositionAttention
from models.attention.psa import PSA, PyramidSplitAttention
from models.attention.scconv import SCConv, SelfCalibratedConv
from models.layers import PixelAttention

__all__ = [
    "ATTENTION_BLOCKS",
    "build_attention",
    "check_attention_name",
    "BAM", "BottleneckAttention",
    "CAM", "ChannelAttention",
    "CA", "ContextualAttention",
    "ECA", "EfficientChannelAttention",
    "EMA", "ExpectationMaximizationAttention",
    "EMSA", "EfficientMultiHeadAttention",
    "EA", "ExternalAttention",
    "PAM", "PositionAttention",
    "PSA", "PyramidSplitAttention",
    "SCConv", "SelfCalibratedConv",
    "PixelAttention",
]

# Global blocks whose paper form compares all H x W positions with each other would build an
# (HW)^2 map on the 224 x 224 grid (10 GB); they compare with an 8-fold down-scaled grid
# (28 x 28 positions), as ResT's first stage reduces its keys.
_GLOBAL_REDUCTION = 8

ATTENTION_BLOCKS: dict[str, Callable[[int, int], nn.Module]] = {
    "pixel": lambda dim, dilation: PixelAttention(dim, dilation),
    "bam": lambda dim, dilation: BottleneckAttention(dim, dilation=dilation),
    "pam": lambda dim, dilation: PositionAttention(dim, kv_stride=_GLOBAL_REDUCTION),
    "cam": lambda dim, dilation: ChannelAttention(dim),
    "eca": lambda dim, dilation: EfficientChannelAttention(dim),
    "scconv": lambda dim, dilation: SelfCalibratedConv(dim, pooling_rate=dilation),
    "psa": lambda dim, dilation: PyramidSplitAttention(dim, dilation=dilation),
    "emsa": lambda dim, dilation: EfficientMultiHeadAttention(dim, sr_ratio=_GLOBAL_REDUCTION),
    "external": lambda dim, dilation: ExternalAttention(dim),
    "ema": lambda dim, dilation: ExpectationMaximizationAttention(dim),
    "contextual": lambda dim, dilation: ContextualAttention(dim, rate=_GLOBAL_REDUCTION),
}


def check_attention_name(name: str) -> None:
    """Raise ValueError naming the choices when ``name`` is not a known attention block."""
    if name not in ATTENTION_BLOCKS:
        raise ValueError(f"unknown attention block {name!r}; choose from {', '.join(sorted(ATTENTION_BLOCKS))}")


def build_attention(name: str, *, dim: int, dilation: int) -> nn.Module:
    """The block called ``name`` for one SPAN slot of ``dim`` channels at ``dilation``."""
    check_attention_name(name)
    return ATTENTION_BLOCKS[name](dim, dilation)
