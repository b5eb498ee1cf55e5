"""The ONNX model's interface and the names of the weights files: one definition that the
exporter writes (models/export.py) and the runtime checks (service/engine.py)."""
from __future__ import annotations

MODEL_NAME = "span"
MODEL_VERSION = "0.1.0"

# Tensor names, dtypes and layouts of the exported graph (docs/architecture.md).
INPUT_NAME = "image"
CUES_NAME = "cues"  # second input of models with fixed cues (spancore.cues, manifest "cues")
OUTPUT_NAME = "heatmap"
DEFAULT_THRESHOLD = 0.5  # decision threshold of a model whose manifest names no operating point
INPUT_CONTRACT = {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "colour": "RGB", "range": [0, 255]}
OUTPUT_CONTRACT = {"name": OUTPUT_NAME, "dtype": "float32", "layout": "N1HW", "range": [0, 1]}

# Files of a weights folder.
MANIFEST_NAME = "manifest.json"
ONNX_NAME = "span.onnx"
INT8_NAME = "span.int8.onnx"
TORCH_NAME = "span.pt"

# scores[K + INT8_SUFFIX]: benchmark K scored with the int8 model; the int8 file is used only
# when its pixel AUC is within INT8_MAX_AUC_DROP of the fp32 file's on every such pair.
INT8_SUFFIX = "@int8"
INT8_MAX_AUC_DROP = 0.01
