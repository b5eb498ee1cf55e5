"""The API's answers as pydantic models (the OpenAPI schema at /docs), and the request bodies
and error responses that FastAPI cannot infer from the handlers' signatures."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.decode import ALLOWED_FORMATS


class ErrorDetail(BaseModel):
    code: str = Field(examples=["corrupt_image"])
    message: str = Field(examples=["cannot decode the JPEG pixel data: image file is truncated"])
    request_id: str | None = Field(None, description="The request's X-Request-ID: quote it when reporting a problem")


class ErrorBody(BaseModel):
    error: ErrorDetail


class ModelSummary(BaseModel):
    name: str
    version: str
    sha256: str = Field(description="sha256 of the ONNX file that produced this answer")
    trained: bool
    precision: str = Field(description="'fp32' (span.onnx) or 'int8' (span.int8.onnx)")


class ImageMetadataOut(BaseModel):
    format: str = Field(description="Detected from the bytes: " + ", ".join(ALLOWED_FORMATS))
    width: int = Field(description="Displayed width (after EXIF orientation)")
    height: int
    original_width: int = Field(description="Width as stored in the file")
    original_height: int
    mode: str = Field(description="Pillow mode of the stored pixels (RGB, RGBA, P, I;16, CMYK...)")
    orientation: int | None = Field(description="EXIF orientation tag 1..8, null when absent")
    orientation_applied: bool
    has_alpha: bool = Field(description="Transparent pixels were composited over white")
    camera: str | None
    software: str | None
    captured: str | None = Field(description="EXIF DateTimeOriginal as written by the camera")


class CloneOut(BaseModel):
    shift: list[int] = Field(description="[dx, dy] in pixels: the pixels at (x + dx, y + dy) repeat those at (x, y)")
    area_fraction: float = Field(description="Share of the photo one copy covers (both copies are marked)")
    correlation: float = Field(description="Median local correlation of the two copies' noise residuals (1: exact)")


class ClonesOut(BaseModel):
    found: bool = Field(description="A part of the photo was copied onto the photo itself by a plain shift")
    version: str
    scale: int = Field(description="The photo was binned by this factor for the search (1: native resolution)")
    clones: list[CloneOut]


class LocalizeResult(BaseModel):
    score: float = Field(ge=0, le=1, description="Image-level score: mean of the top 1% of the map's probabilities, "
                         "combined (noisy-OR) with the confidence of a clone found; compare it with image_threshold")
    tampered_fraction: float = Field(ge=0, le=1, description="Fraction of pixels marked: probability >= threshold "
                                     "and >= relative_cut x the map's peak")
    threshold: float
    relative_cut: float = Field(0.0, ge=0, le=1, description="Peak-relative cut of the marking (0: none)")
    image_threshold: float | None = Field(None, ge=0, le=1, description="The image decision: score at or above it "
                                          "is worth a closer look")
    width: int
    height: int
    clones: ClonesOut | None = Field(None, description="Copies of a part of the photo onto itself (spancore.clones), "
                                     "marked in the map at their confidence; null where SPAN_CLONES is off")
    heatmap_png_base64: str | None = Field(
        None, description="8-bit grayscale PNG, width x height, white = probability 1"
    )
    model: ModelSummary
    timings_ms: dict[str, float] = Field(description="decode, queue_wait, inference, clones, encode, total; over "
                                         "HTTP the clone search runs beside the model, so its time is inside "
                                         "inference and not added to total")
    metadata: ImageMetadataOut

    model_config = {
        "json_schema_extra": {
            "example": {
                "score": 0.83,
                "tampered_fraction": 0.042,
                "threshold": 0.5,
                "relative_cut": 0.3,
                "image_threshold": 0.45,
                "width": 1024,
                "height": 768,
                "clones": {"found": True, "version": "residual-shift-v2", "scale": 1,
                           "clones": [{"shift": [211, -10], "area_fraction": 0.0127, "correlation": 1.0}]},
                "heatmap_png_base64": "iVBORw0KGgoAAAANSUhEUgAABAAAAAMACAAAAAB...",
                "model": {"name": "span", "version": "0.1.0", "sha256": "9f2c...", "trained": False},
                "timings_ms": {"decode": 3.1, "queue_wait": 0.4, "inference": 412.0, "clones": 380.0, "encode": 4.2,
                               "total": 799.7},
                "metadata": {
                    "format": "JPEG", "width": 1024, "height": 768, "original_width": 768,
                    "original_height": 1024, "mode": "RGB", "orientation": 6, "orientation_applied": True,
                    "has_alpha": False, "camera": "Canon EOS 40D", "software": "GIMP 2.4.5",
                    "captured": "2008:05:30 15:56:01",
                },
            }
        }
    }


class ScanItem(BaseModel):
    index: int
    filename: str | None
    score: float | None = None
    tampered_fraction: float | None = None
    threshold: float | None = None
    width: int | None = None
    height: int | None = None
    heatmap_png_base64: str | None = None
    model: ModelSummary | None = None
    timings_ms: dict[str, float] | None = None
    metadata: ImageMetadataOut | None = None
    error: ErrorDetail | None = Field(None, description="Set instead of the result when this image failed")

    model_config = {
        "json_schema_extra": {
            "example": {
                "index": 2,
                "filename": "x.jpg",
                "error": {"code": "corrupt_image", "message": "cannot decode the JPEG pixel data: image file is truncated"},
            }
        }
    }


class ModelDescription(BaseModel):
    name: str
    version: str
    sha256: str
    trained: bool
    status: str = Field(description="Says loudly when the weights are untrained")
    provider: str = Field(description="ONNX Runtime execution provider actually in use")
    providers_in_use: list[str]
    providers_configured: list[str]
    input: dict[str, Any]
    output: dict[str, Any]
    architecture: dict[str, Any]
    produced_by: dict[str, Any]
    scores: dict[str, Any]
    large_image_policy: str
    threshold: float = Field(description="The decision threshold in use: SPAN_THRESHOLD, else the model's operating point")
    operating_threshold: float | None = Field(None, description="The model's own operating point (chosen on synthetic "
                                              "validation forgeries at training time), None if it has none")
    relative_cut: float = Field(0.0, description="The peak-relative cut in use: SPAN_RELATIVE_CUT, else the model's")
    image_threshold: float | None = Field(None, description="The image decision's threshold in use: "
                                          "SPAN_IMAGE_THRESHOLD, else the model's, else `threshold`")
    operating_image_threshold: float | None = Field(None, description="The model's own image threshold, None if "
                                                    "it has none")
    operating_relative_cut: float | None = Field(None, description="The model's own peak-relative cut, chosen "
                                                 "with its operating point; None if it has none")
    cues: dict[str, Any] | None = Field(None, description="The fixed forensic cues the model takes beside the image "
                                        "(spancore.cues: name, version, channels), None for an image-only model")
    warning: str | None = Field(None, description="Read before trusting a map: set while the model is "
                                "untrained, or when its makers attached a caveat (e.g. a weak training budget)")
    training: dict[str, Any] = Field(default_factory=dict, description="How the weights were trained")
    precision: str = Field(description="'fp32' (span.onnx) or 'int8' (span.int8.onnx), see SPAN_PRECISION")
    clones: dict[str, Any] = Field(default_factory=dict, description="The clone search folded into every answer "
                                   "(spancore.clones): enabled (SPAN_CLONES) and its version")
    int8_gate: str = Field(description="Whether the int8 variant passed its accuracy gate, from the manifest's scores")


class LayerSection(BaseModel):
    applicable: bool = Field(description="False when the layer has nothing to say about this file; see reason")
    reason: str | None = Field(None, description="Why the layer does not apply (not a JPEG, no metadata, ...)")
    summary: dict[str, Any] = Field(description="The layer's figures (docs: README 'Forensic layers')")
    png_base64url: str | None = Field(
        None, description="Pixel layers: 8-bit greyscale PNG (white = 1), the photo's size as displayed, "
        "URL-safe base64 without padding (RFC 4648 section 5)")
    ms: float = Field(description="Time the layer took, in milliseconds")


class AnalyzeResult(BaseModel):
    width: int = Field(description="Width of the photo as displayed (after EXIF orientation)")
    height: int
    png_encoding: str = Field("base64url", description="How the layers' PNGs are encoded")
    layers: dict[str, LayerSection] = Field(description="One section per layer asked for, in the order asked")
    timings_ms: dict[str, float] = Field(description="decode, layers (the layers and the model side by side), encode, "
                                         "total (wall time); each layer's own time is in its section")
    metadata: dict[str, Any] = Field(description="What the decoder read: format, sizes, orientation, camera...")
    model: dict[str, Any] | None = Field(None, description="The model that made the `span` layer, when asked")


ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Upload, pixel count or batch too large"},
    415: {"model": ErrorBody, "description": "Not a supported image format (read from the bytes)"},
    422: {"model": ErrorBody, "description": "Corrupt or truncated image, or a malformed request"},
    503: {"model": ErrorBody, "description": "Queue full, warming up or shutting down; see Retry-After"},
    504: {"model": ErrorBody, "description": "No heatmap within the request timeout"},
}

IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "One image as multipart field `image`, or the raw image as the body. "
        "The format is read from the bytes; the file name and Content-Type are ignored.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

SCAN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["images"],
                }
            }
        },
    }
}


# The answers of the routes behind the API keys (service/security), added where they are included.
ACCESS_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or not one this server accepts (see WWW-Authenticate)"},
    429: {"model": ErrorBody, "description": "Over this client's rate limit; see Retry-After"},
}
