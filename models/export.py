"""Export SPAN to ONNX, prove ORT parity, and write weights/ with its manifest.

Exporter: torch's TorchScript-based exporter (``dynamo=False``). It traces this network
into a clean graph with dynamic batch/height/width (sizes are read with Shape ops, never
baked in) and needs no extra package; the dynamo path would add onnxscript to the
``train`` extra for no gain here. The ONNX contract is in docs/architecture.md.
"""
from __future__ import annotations

import datetime as _dt
import subprocess
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.span import Span, SpanConfig
from spancore.contract import CUES_NAME, INPUT_CONTRACT, MODEL_NAME, MODEL_VERSION, OUTPUT_CONTRACT  # the runtime checks these
from spancore.cues import BLOCK, CUE_NAMES, CUES_VERSION, compute_cues
from spancore.weights import WeightsManifest, file_entry  # one contract for writer and reader (no torch there)

__all__ = [
    "OPSET",
    "UNTRAINED_STATUS",
    "export_onnx",
    "onnx_parity",
    "write_manifest",
    "export_weights",
    "ParityError",
]

OPSET = 17
UNTRAINED_STATUS = "UNTRAINED: random initialisation, not a detector"
PARITY_TOLERANCE = 1e-4
# (batch, height, width) checked against torch before anything is written.
PARITY_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 17, 9), (2, 64, 48), (1, 333, 517))


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with torch beyond the tolerance."""


def export_onnx(model: Span, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example: tuple[torch.Tensor, ...] = (torch.rand(1, 3, 64, 48) * 255.0,)
    axes = {0: "batch", 2: "height", 3: "width"}
    inputs, dynamic = ["image"], {"image": axes, "heatmap": axes}
    if model.config.cue_channels:  # second input: spancore.cues, one value per 8x8 block
        example += (torch.randn(1, model.config.cue_channels, 8, 6),)
        inputs.append("cues")
        dynamic["cues"] = {0: "batch", 2: "block_rows", 3: "block_columns"}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer flags the working grid's size as a constant: it is one, by design.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # Informational: slices with step != 1 are left to ORT's own constant folding.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=["heatmap"],
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    # The tracer cannot see through the final resize that the channel axis is 1; the
    # contract says it is, so record it for consumers that read shapes from the graph.
    import onnx

    graph = onnx.load(str(path))
    channel = graph.graph.output[0].type.tensor_type.shape.dim[1]
    channel.Clear()
    channel.dim_value = 1
    _omit_empty_resize_inputs(graph)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def _omit_empty_resize_inputs(graph) -> None:
    """Resize's roi and scales, unused when sizes are given, come out of the TorchScript
    exporter as empty Constant tensors (it cannot emit an omitted input). Tools that insert
    Casts around Resize (the fp16 converter keeps Resize in fp32) turn those into computed
    tensors, and ORT then refuses 'both sizes and scales'. An empty input name says 'absent'."""
    from onnx import numpy_helper

    empty = {
        node.output[0]
        for node in graph.graph.node
        if node.op_type == "Constant"
        and [a.name for a in node.attribute] == ["value"]
        and numpy_helper.to_array(node.attribute[0].t).size == 0
    }
    for node in graph.graph.node:
        if node.op_type == "Resize":
            for i in (1, 2):
                if node.input[i] in empty:
                    node.input[i] = ""
    used = {name for node in graph.graph.node for name in node.input}
    kept = [n for n in graph.graph.node if not (n.op_type == "Constant" and n.output[0] in empty - used)]
    del graph.graph.node[:]
    graph.graph.node.extend(kept)


def onnx_parity(
    model: Span,
    onnx_path: str | Path,
    shapes: Iterable[tuple[int, int, int]] = PARITY_SHAPES,
    *,
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 0,
) -> float:
    """Run torch and ONNX Runtime (CPU) on random images of each (batch, h, w).

    Returns the largest absolute difference seen; raises ParityError above ``tolerance``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    model = model.eval()
    for batch, height, width in shapes:
        image = torch.rand(batch, 3, height, width, generator=generator) * 255.0
        feeds = {"image": image.numpy()}
        cues = None
        if model.config.cue_channels:
            cues = torch.randn(batch, model.config.cue_channels, -(-height // 8), -(-width // 8), generator=generator)
            feeds["cues"] = cues.numpy()
        with torch.no_grad():
            expected = model(image, cues).numpy()
        (got,) = session.run(["heatmap"], feeds)
        if got.shape != expected.shape:
            raise ParityError(f"shape {got.shape} from ONNX Runtime, {expected.shape} from torch")
        diff = float(np.abs(got - expected).max())
        worst = max(worst, diff)
        if diff > tolerance:
            raise ParityError(f"max |ORT - torch| = {diff:.3g} > {tolerance:g} at batch {batch}, {height}x{width}")
    return worst


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        )
        # Dirty means the torch-side code (models/) differs from the commit; the weights being
        # rewritten and docs being edited do not change what was exported.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True, text=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# int8 calibration: the first photos of the BSDS500 train split, at this size (width, height);
# enough for activation ranges, and the same set for the shipped file and the bench's levers.
CALIBRATION_PHOTOS = 8
CALIBRATION_SIZE = (320, 240)


def calibration_photos() -> list[Path]:
    """The int8 calibration set from the shared data (empty where the data is absent)."""
    from models.sources import shared_data_dir

    return sorted((shared_data_dir() / "photos" / "bsds500" / "train").glob("*.jpg"))[:CALIBRATION_PHOTOS]


def featex_3x3(node_name: str) -> bool:
    """The convolutions span.int8.onnx quantises: Featex's blocks and transform."""
    return node_name.startswith(("/featex/blocks", "/featex/transform"))


def quantize_convs(
    source: str | Path, target: str | Path, photos: Sequence[str | Path], *, select: Callable[[str], bool] = featex_3x3
) -> Path:
    """int8 QDQ copy of the model: the Conv nodes whose names ``select`` accepts get per-channel
    int8 weights and uint8 activations calibrated on ``photos``; every other node stays float.

    The default is the shipped recipe, Featex's 3x3 convolutions only (two thirds of the CPU
    time). The forensic first layer (sub-level residuals), the attention (its one-hot and
    dot-product convolutions feed products of activations) and the head stay float:
    quantising every convolution but the first layer measured 2.1x faster but cost 0.028 dev
    pixel AUC; this recipe cost nothing measurable (docs/performance.md)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from PIL import Image

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(photos)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self.items, None)
            if path is None:
                return None
            rgb = np.asarray(Image.open(path).convert("RGB").resize(CALIBRATION_SIZE))
            feeds = {INPUT_CONTRACT["name"]: np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32)}
            if takes_cues:
                feeds[CUES_NAME] = compute_cues(rgb)[None]
            return feeds

    takes_cues = CUES_NAME in {i.name for i in onnx.load(str(source)).graph.input}

    convs = [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "Conv"]
    keep_float = [name for name in convs if not select(name)]
    if len(keep_float) == len(convs):
        raise ValueError(f"{source}: no convolution selected to quantise (node names changed?)")
    quantize_static(str(source), str(target), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=keep_float)
    return Path(target)


def write_manifest(
    weights_dir: str | Path,
    config: SpanConfig,
    *,
    files: Sequence[str],
    trained: bool,
    status: str,
    command: str,
    parity_max_abs_diff: float | None = None,
    scores: dict[str, Any] | None = None,
    warning: str | None = None,
    training: dict[str, Any] | None = None,
    int8: dict[str, Any] | None = None,
    threshold: float | None = None,
    relative_cut: float | None = None,
    image_threshold: float | None = None,
) -> Path:
    """Write weights_dir/manifest.json (format: docs/architecture.md) with each file's sha256.
    A model with cue channels gets the cue input's contract ('cues'); ``threshold`` is the
    operating point chosen on synthetic validation (the service's default decision threshold),
    ``relative_cut`` the peak-relative cut chosen with it (spancore.scoring.decision_mask) and
    ``image_threshold`` the image decision's (image score at or above it)."""
    weights_dir = Path(weights_dir)
    extra: dict[str, Any] = {}
    if config.cue_channels:
        extra["cues"] = {"name": CUES_NAME, "version": CUES_VERSION, "channels": list(CUE_NAMES), "block": BLOCK,
                         "dtype": "float32", "layout": "NCHW, one value per 8x8 block of the photo at native size",
                         "computed_by": "spancore.cues.compute_cues (the service computes it; not an ONNX op)"}
    if threshold is not None:
        extra["threshold"] = round(float(threshold), 4)
    if relative_cut:
        extra["relative_cut"] = round(float(relative_cut), 4)
    if image_threshold is not None:
        extra["image_threshold"] = round(float(image_threshold), 4)
    manifest = WeightsManifest(**extra,
        name=MODEL_NAME,
        version=MODEL_VERSION,
        trained=trained,
        status=status,
        warning=warning,
        architecture=config.to_dict(),
        input=INPUT_CONTRACT,
        output=OUTPUT_CONTRACT,
        onnx={"file": "span.onnx", "opset": OPSET, "parity_max_abs_diff": parity_max_abs_diff},
        int8=int8,
        files={name: file_entry(weights_dir / name) for name in files},
        produced_by={
            "command": command,
            "git_commit": _git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__.split("+")[0],
        },
        training=training or {},
        scores=scores or {},
    )
    return manifest.save(weights_dir)


def export_weights(
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    preset: str = "slim",
    config: SpanConfig | None = None,
    seed: int = 0,
    warning: str | None = None,
    command: str = "span export",
    parity_shapes: Iterable[tuple[int, int, int]] = PARITY_SHAPES,
    int8_calibration: Sequence[str | Path] = (),
) -> Path:
    """Write span.pt, span.onnx and manifest.json into ``out_dir``; returns the manifest path.

    With ``int8_calibration`` photos, also span.int8.onnx (``quantize_convs``). The service
    uses it only once ``span evaluate --record`` has scored both files on a benchmark and the
    int8 pixel AUC is within the gate (spancore/weights.py); export alone proves nothing.

    From a training checkpoint (``Span.checkpoint()`` dict; its 'trained' flag, 'status',
    'warning', 'training' and 'scores' are carried over; ``warning`` replaces its warning)
    or, without one, an UNTRAINED initialisation of ``config`` (default: the named ``preset``)
    seeded with ``seed``. Nothing is written unless ORT parity holds.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model = Span.from_checkpoint(data)
        trained = bool(data.get("trained", True))
        status = data.get("status") or ("trained" if trained else UNTRAINED_STATUS)
        scores = data.get("scores", {})
        warning = warning or data.get("warning")
        training = data.get("training", {})
        validation = training.get("validation") or data.get("validation") or {}
        threshold, relative_cut = validation.get("val_threshold"), validation.get("val_relative_cut")
        image_threshold = validation.get("val_image_threshold")
    else:
        threshold = relative_cut = image_threshold = None
        torch.manual_seed(seed)
        model = Span(config or SpanConfig.preset(preset))
        trained, status, scores, training = False, UNTRAINED_STATUS, {}, {}
    model.eval()

    tmp_onnx = out_dir / "span.onnx.tmp"
    export_onnx(model, tmp_onnx)
    worst = onnx_parity(model, tmp_onnx, parity_shapes)
    tmp_onnx.replace(out_dir / "span.onnx")
    torch.save(model.checkpoint(trained=trained, status=status, scores=scores, warning=warning, training=training),
               out_dir / "span.pt")
    files = ["span.onnx", "span.pt"]
    int8_path = out_dir / "span.int8.onnx"
    int8 = None
    if int8_calibration:
        quantize_convs(out_dir / "span.onnx", int8_path, int8_calibration)
        files.append(int8_path.name)
        int8 = {"file": int8_path.name, "quantised": "Featex 3x3 convolutions (blocks, transform): per-channel int8 "
                "weights, uint8 activations; the rest float", "calibration": f"{len(int8_calibration)} photos at "
                f"{CALIBRATION_SIZE[0]}x{CALIBRATION_SIZE[1]}: {', '.join(Path(p).name for p in int8_calibration)}"}
    else:
        int8_path.unlink(missing_ok=True)  # never leave a stale variant beside new weights
    return write_manifest(
        out_dir,
        model.config,
        files=files,
        trained=trained,
        status=status,
        command=command,
        parity_max_abs_diff=worst,
        scores=scores,
        warning=warning,
        training=training,
        int8=int8,
        threshold=threshold,
        relative_cut=relative_cut,
        image_threshold=image_threshold,
    )
