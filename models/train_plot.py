"""The loss curves of a training run (runs/<name>/loss.png), drawn from its log.jsonl."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

def _running_mean(values: list[float]) -> np.ndarray:
    window = max(1, len(values) // 15)
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(len(values)) + 1 - counts]) / counts


def plot_log(log_path: Path, out: Path) -> None:
    """Loss curves of both stages, stage-1 accuracy and stage-2 validation AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    # a run that starts from an earlier model (init_checkpoint) has no stage 1: draw its stage 2 alone
    stages = [stage for stage in (1, 2) if any(r.get("stage") == stage for r in records)] or [1, 2]
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        steps = [r for r in records if r.get("stage") == stage and "loss" in r]
        x = [r["step"] for r in steps]
        if steps:  # raw per-batch values faint, their running mean on top
            ax.plot(x, [r["loss"] for r in steps], color="tab:blue", lw=0.6, alpha=0.35)
            ax.plot(x, _running_mean([r["loss"] for r in steps]), color="tab:blue", lw=1.5, label="train loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("stage 1: operation classification" if stage == 1 else "stage 2: localisation")
        twin = ax.twinx()
        if stage == 1 and steps:
            twin.plot(x, _running_mean([r["accuracy"] for r in steps]), color="tab:orange", lw=1.5,
                      label="train accuracy (running mean)")
            twin.set_ylabel("accuracy")
        vals = [r for r in records if r.get("stage") == stage and r.get("val_pixel_auc") is not None]
        if vals:
            twin.plot([r["step"] for r in vals], [r["val_pixel_auc"] for r in vals], "o-", color="tab:green",
                      label="val pixel AUC")
            twin.set_ylabel("validation pixel AUC")
        twin.set_ylim(0, 1)
        lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        if lines:
            ax.legend(lines, [h.get_label() for h in lines], loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)

