"""The SPAN network, readable top to bottom: config, feature extractor, whole model.

RGB 0..255 float NCHW in, probability of manipulation N x 1 x H x W out (same H, W).

    image --Featex--> 256-ch unit-norm features (full res, or pooled per SpanConfig)
          --OutlierTransform--> 32 ch
          --TF1 bilinear--> working grid (224 x 224)  (the two commute; the paper resizes first)
          --5 x (PixelAttention + AttentionFeedForward), dilations 1, 3, 9, 27, 81-->
          --head: 5x5 convs 32->32->16->8->4->1, ReLU between--> logits on the grid
          --sigmoid, TF1 bilinear back to H x W--> heatmap

Padding: Featex convs pad symmetrically as the reference (TF 'SYMMETRIC', see
``layers.symmetric_pad``); attention feed-forward and head convs zero-pad ('same').
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.attention import build_attention, check_attention_name
from models.layers import (
    AttentionFeedForward,
    ForensicConv,
    OutlierTransform,
    PixelAttention,
    SymmetricConv2d,
    tf1_bilinear_resize,
)

__all__ = ["SpanConfig", "Featex", "Span", "PRESETS"]

REFERENCE_BLOCKS: tuple[tuple[int, ...], ...] = ((32,), (64, 64), (128, 128, 128), (256, 256, 256), (256, 256))


@dataclass(frozen=True)
class SpanConfig:
    """Everything that shapes the network. Defaults are the reference (ECCV 2020) layout."""

    name: str = "reference"
    # Featex first layer: plain 5x5 + 9 fixed SRM + Bayar 5x5 channels (4 + 9 + 3 = 16).
    forensic_plain: int = 4
    forensic_bayar: int = 3
    # VGG-style 3x3 conv blocks after the first layer, and a 2x2 max-pool after block i
    # where featex_pool[i] is true (the reference pools nowhere: full resolution).
    featex_blocks: tuple[tuple[int, ...], ...] = REFERENCE_BLOCKS
    featex_pool: tuple[bool, ...] = (False, False, False, False, False)
    featex_dim: int = 256  # the "transform" conv, L2-normalised over channels
    grid: tuple[int, int] = (224, 224)  # working grid (height, width) of the attention part
    attention_dim: int = 32
    dilations: tuple[int, ...] = (1, 3, 9, 27, 81)
    head_widths: tuple[int, ...] = (32, 16, 8, 4)  # 32 -> 32 -> 16 -> 8 -> 4 -> 1
    # Fixed forensic cues (spancore.cues, one value per 8x8 block, the model's second input):
    # how many channels; 0 = none (the reference). A 1x1 MLP maps them onto the attention
    # width and adds them to the outlier transform's output on the working grid.
    cue_channels: int = 0
    use_featex: bool = True  # False: the cues alone feed the attention (an ablation)
    # Image borders: "zero" = the reference (out-of-image attention neighbours keep logit 0,
    # feed-forward and head convs zero-pad); "exclude" = such neighbours get no attention
    # weight and the convs replicate the edge (no darkening towards the border). Other attention
    # blocks keep their own border handling; with "exclude" the convs around them replicate.
    edges: str = "zero"
    # Activation between the head's 5x5 convs: "relu" (the reference) or "leaky" (LeakyReLU 0.1).
    # The head narrows to 4 channels; with ReLU all four died (a constant map) in 2 of 3 CPU runs.
    head_activation: str = "relu"
    attention: str = "pixel"  # the block in the five slots, by name (models/attention/__init__.py)

    def __post_init__(self) -> None:
        if len(self.featex_pool) != len(self.featex_blocks):
            raise ValueError("featex_pool needs one flag per Featex block")
        if self.edges not in ("zero", "exclude"):
            raise ValueError(f"edges must be 'zero' or 'exclude', not {self.edges!r}")
        if self.head_activation not in ("relu", "leaky"):
            raise ValueError(f"head_activation must be 'relu' or 'leaky', not {self.head_activation!r}")
        if not self.use_featex and not self.cue_channels:
            raise ValueError("use_featex=False needs cue_channels > 0: the network would see nothing")
        check_attention_name(self.attention)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpanConfig:
        """Inverse of to_dict (JSON turns tuples into lists; this turns them back)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SpanConfig fields: {sorted(unknown)}")

        def tuples(v: Any) -> Any:
            return tuple(tuples(i) for i in v) if isinstance(v, list | tuple) else v

        return cls(**{k: tuples(v) for k, v in data.items()})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SpanConfig:
        """Named layouts: 'reference', 'pooled', 'slim' (see PRESETS and docs/featex-variants.md)."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
        return dataclasses.replace(base, **overrides)

    @property
    def stride(self) -> int:
        """Input pixels per Featex output pixel along each axis."""
        return 2 ** sum(self.featex_pool)


SLIM_BLOCKS: tuple[tuple[int, ...], ...] = ((16,), (32, 32), (64, 64, 64), (128, 128, 128), (128, 128))

PRESETS: dict[str, SpanConfig] = {
    # The paper's layout: full resolution everywhere, ~3.7 M multiply-adds per pixel.
    "reference": SpanConfig(),
    # 2x2 max-pool after blocks 1 and 2: the deep blocks run at 1/16 of the pixels.
    "pooled": SpanConfig(name="pooled", featex_pool=(True, True, False, False, False)),
    # "pooled" at half width (same 1/4 stride, same 256-d features): ~1/3.4 of its cost.
    "slim": SpanConfig(
        name="slim",
        featex_blocks=SLIM_BLOCKS,
        featex_pool=(True, True, False, False, False),
    ),
    # "slim" + the fixed forensic cues (spancore.cues) + borders that do not darken.
    "cues": SpanConfig(
        name="cues",
        featex_blocks=SLIM_BLOCKS,
        featex_pool=(True, True, False, False, False),
        cue_channels=8,
        edges="exclude",
        head_activation="leaky",
    ),
}


class Featex(nn.Module):
    """ManTra-Net's VGG-16-style feature extractor (create_featex_vgg16_base, 16-ch first layer).

    Takes RGB 0..255 and scales it to -1..1 itself, so it can be trained on its own
    (stage 1) with the same input as the whole network.
    """

    def __init__(self, config: SpanConfig):
        super().__init__()
        self.config = config
        # Pixels 0..255 are scaled to -1..1 inside the first layer's convolution (exact, cheaper).
        first = ForensicConv(
            plain=config.forensic_plain, bayar=config.forensic_bayar, input_scale=2.0 / 255.0, input_offset=-1.0
        )
        self.forensic = first
        layers: list[nn.Module] = []
        width = first.out_channels
        for block, pool in zip(config.featex_blocks, config.featex_pool):
            for out in block:
                layers += [SymmetricConv2d(width, out, 3), nn.ReLU(inplace=True)]
                width = out
            if pool:
                # ceil_mode: an odd edge keeps its last row/column, and a 1-pixel map stays 1 pixel.
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.blocks = nn.Sequential(*layers)
        self.transform = SymmetricConv2d(width, config.featex_dim, 3)
        self.out_channels = config.featex_dim

    def forward(self, image: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
        """Unit-norm features (N, featex_dim, H / stride, W / stride); with normalise=False,
        the features before that final L2 normalisation over channels."""
        x = image
        if torch.is_autocast_enabled(x.device.type):
            # Forensic traces are a pixel level or less: bf16/fp16 rounding of the input and of
            # the high-pass responses would erase them, so the first layer always runs in fp32.
            with torch.autocast(x.device.type, enabled=False):
                x = self.forensic(x.float())
        else:
            x = self.forensic(x)
        features = self.transform(self.blocks(x))
        return F.normalize(features, dim=1, eps=1e-12) if normalise else features


class Span(nn.Module):
    """The whole SPAN network. ``forward(image)`` -> probability map N x 1 x H x W."""

    def __init__(self, config: SpanConfig | None = None):
        super().__init__()
        config = config or SpanConfig()
        self.config = config
        self.featex = Featex(config)
        d = config.attention_dim
        self.outlier = OutlierTransform(config.featex_dim, d)
        if config.cue_channels:
            self.cue_transform = nn.Sequential(
                nn.Conv2d(config.cue_channels, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 1))
        padding_mode = "replicate" if config.edges == "exclude" else "zeros"
        if config.edges == "exclude" and config.attention == "pixel":  # out-of-image neighbours get no weight
            blocks = [PixelAttention(d, dilation, edges="exclude") for dilation in config.dilations]
        else:
            blocks = [build_attention(config.attention, dim=d, dilation=dilation) for dilation in config.dilations]
        self.attention = nn.ModuleList(blocks)
        self.feed_forward = nn.ModuleList(AttentionFeedForward(d, padding_mode=padding_mode) for _ in config.dilations)
        head: list[nn.Module] = []
        width = d
        for out in config.head_widths:
            activation = nn.LeakyReLU(0.1, inplace=True) if config.head_activation == "leaky" else nn.ReLU(inplace=True)
            head += [nn.Conv2d(width, out, 5, padding=2, padding_mode=padding_mode), activation]
            width = out
        head.append(nn.Conv2d(width, 1, 5, padding=2, padding_mode=padding_mode))
        self.head = nn.Sequential(*head)

    def grid_logits(self, image: torch.Tensor, cues: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-sigmoid logits on the working grid, N x 1 x grid_h x grid_w (for losses)."""
        # The same as logits_from_features(featex(image)) up to float rounding: Featex's L2
        # normalisation is applied to the outlier transform's 32 outputs (OutlierTransform.forward).
        if not self.config.use_featex:
            return self._attend(None, cues)
        return self._attend(self.outlier(self.featex(image, normalise=False), normalise=True), cues)

    def logits_from_features(self, features: torch.Tensor | None, cues: torch.Tensor | None = None) -> torch.Tensor:
        """Everything after Featex: ``grid_logits`` from Featex's (unit-norm) output."""
        return self._attend(None if features is None or not self.config.use_featex else self.outlier(features), cues)

    def _attend(self, x: torch.Tensor | None, cues: torch.Tensor | None) -> torch.Tensor:
        # Outlier transform (1x1, linear) and bilinear resize commute; transforming first
        # resizes 32 channels instead of 256 (the same result up to float rounding).
        if x is not None:
            x = tf1_bilinear_resize(x, self.config.grid)
        if self.config.cue_channels:
            if cues is None:
                raise ValueError("this model needs its cues input (spancore.cues.compute_cues)")
            cue_features = self.cue_transform(tf1_bilinear_resize(cues.float(), self.config.grid).to(
                cues.dtype if x is None else x.dtype))
            x = cue_features if x is None else x + cue_features
        for attention, feed_forward in zip(self.attention, self.feed_forward):
            x = feed_forward(attention(x))
        return self.head(x)

    def forward(self, image: torch.Tensor, cues: torch.Tensor | None = None) -> torch.Tensor:
        shape = torch._shape_as_tensor(image)
        heatmap = torch.sigmoid(self.grid_logits(image, cues))
        return tf1_bilinear_resize(heatmap, (shape[2], shape[3]))

    # -- training helpers ---------------------------------------------------------------

    def freeze_featex(self, frozen: bool = True) -> None:
        """Stage 2 trains with Featex frozen: no gradients, and no optimiser should see it."""
        for p in self.featex.parameters():
            p.requires_grad_(not frozen)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """A dict for torch.save: {'config': ..., 'state_dict': ..., **extra}."""
        return {"config": self.config.to_dict(), "state_dict": self.state_dict(), **extra}

    @classmethod
    def from_checkpoint(cls, source: str | Path | dict[str, Any]) -> Span:
        """Rebuild from ``checkpoint()``'s dict or a file holding it (extra keys ignored)."""
        data = source if isinstance(source, dict) else torch.load(source, map_location="cpu", weights_only=True)
        model = cls(SpanConfig.from_dict(data["config"]))
        model.load_state_dict(data["state_dict"])
        return model
