"""The training config (models/configs/*.json) of models/train.py: per-stage settings and
the run's :class:`TrainConfig`, read from JSON with unknown keys refused."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.losses import DICE_MODES
from models.span import SpanConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- settings

@dataclass
class StageSettings:
    steps: int = 1000
    batch_size: int = 16
    patch: int = 256                # training patch side in pixels
    lr: float = 3e-4                # peak learning rate (AdamW), linear warm-up then cosine decay
    min_lr_ratio: float = 0.05      # final lr = lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    log_every: int = 10
    minutes: float | None = None    # wall-clock budget of the stage (training time); None: steps only


@dataclass
class Stage1Settings(StageSettings):
    half_prob: float = 0.3          # share of patches where the operation covers one half only
    val_samples: int = 400          # BSDS-val patches scored at the end of the stage (0: none)


@dataclass
class LargeCrops:
    """Steps on near-photo-size crops of the camera files. The attention runs on a fixed grid,
    so a 256-px patch puts 2 px in a grid cell where a served 2 MP photo puts 8-12: without
    these steps the network never sees the cue statistics or the context of a whole photo.
    Camera files are the only sources this large (BSDS500 is 481x321)."""
    patch: int = 768
    batch_size: int = 1
    every: int = 3                  # every `every`-th step is a large-crop step (0: none, validation only)
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"camera-splice": 0.7, "camera-pristine": 0.3})
    val_samples: int = 24           # held-out cameras' crops at `patch`, a second validation set


@dataclass
class Stage2Settings(StageSettings):
    dice_weight: float = 0.5        # loss = BCE + dice_weight * soft Dice (0: BCE only)
    dice: str = "batch"             # batch: one Dice over the batch | image: mean of forged samples' own
    val_every: int = 200
    val_samples: int = 64
    val_patch: int | None = None    # default: the training patch
    kind_weights: dict[str, float] | None = None  # default: synthesis.DEFAULT_KIND_WEIGHTS
    recipe: dict[str, Any] | None = None  # synthesis.Recipe fields (default: the original stream)
    pos_weight: float = 1.0         # BCE weight of manipulated pixels (they are the minority)
    # large-crop steps (LargeCrops fields); with them the best checkpoint is chosen by the mean
    # of the two validation sets' pixel AUC, not by the 256-px set alone
    large: dict[str, Any] | None = None

    def large_crops(self) -> LargeCrops | None:
        if self.large is None:
            return None
        _check_keys(LargeCrops, self.large, "stage2.large")
        return LargeCrops(**self.large)


@dataclass
class TrainConfig:
    name: str
    span: dict[str, Any] = field(default_factory=lambda: {"preset": "slim"})  # preset + SpanConfig overrides
    stage1: Stage1Settings = field(default_factory=Stage1Settings)
    stage2: Stage2Settings = field(default_factory=Stage2Settings)
    featex_checkpoint: str | None = None  # skip stage 1: start from this featex.pt
    init_checkpoint: str | None = None    # skip stage 1: start stage 2 from this model (a run's final.pt)
    seed: int = 0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    amp: str = "auto"               # auto | bf16 | fp16 | off (auto: bf16 where supported, fp16 on older GPUs)
    num_workers: int = 2            # DataLoader workers synthesising forgeries
    threads: int | None = None      # torch intra-op threads (CPU); None: torch's default
    checkpoint_minutes: float = 3.0
    runs_dir: str = "runs"
    data_dir: str | None = None     # default: ../shared/data (or SPAN_SHARED_DATA)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        _check_keys(cls, data, "config")
        for key, kind in (("stage1", Stage1Settings), ("stage2", Stage2Settings)):
            if key in data:
                _check_keys(kind, data[key], key)
                data[key] = kind(**data[key])
        config = cls(**data)
        config.stage2.large_crops()  # unknown large-crop keys are refused at load time too
        if config.stage2.dice not in DICE_MODES:
            raise ValueError(f"stage2.dice must be one of {DICE_MODES}, not {config.stage2.dice!r}")
        return config

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def span_config(self) -> SpanConfig:
        spec = dict(self.span)
        base = SpanConfig.preset(spec.pop("preset", "slim"))
        return SpanConfig.from_dict({**base.to_dict(), **spec})

    def with_seed(self, seed: int | None) -> TrainConfig:
        """This config with another seed, run in runs/<name>-seed<seed>/ so that seeds of one recipe
        never share a folder (`span train --seed`); None: unchanged."""
        if seed is None:
            return self
        return dataclasses.replace(self, seed=seed, name=f"{self.name}-seed{seed}")

    @property
    def run_dir(self) -> Path:
        root = Path(self.runs_dir)
        return (root if root.is_absolute() else REPO_ROOT / root) / self.name


def _check_keys(kind: type, data: dict[str, Any], where: str) -> None:
    unknown = set(data) - {f.name for f in dataclasses.fields(kind)}
    if unknown:
        raise ValueError(f"unknown {where} settings: {sorted(unknown)}")
