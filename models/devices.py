"""Device and mixed-precision choice of a training run (models/train.py)."""
from __future__ import annotations

import torch

# ----------------------------------------------------------------------------- devices and precision

def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_amp(name: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware has it (no loss scaling needed), fp16 + GradScaler on older
    GPUs, nothing when off. On CPU, auto means bf16: measured 2x faster for Featex on this
    AVX512-BF16 machine and neutral for the attention part (docs/training.md)."""
    if name == "off":
        return None
    if name == "fp16":
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    if name != "auto":
        raise ValueError(f"amp must be auto, bf16, fp16 or off, not {name!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16

