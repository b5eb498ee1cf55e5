"""Bytes -> RGB uint8 pixels as a person sees them, plus the metadata an analyst wants.

- The format comes from the bytes (Pillow's own signature detection, with pillow-heif
  registered for HEIC/HEIF), never from a file name or a Content-Type. Only the formats
  below are tried, so no exotic decoder is ever reached from the network.
- The pixel limit is checked from the header, before a single pixel is decoded.
- EXIF orientation is applied (`ImageOps.exif_transpose`), so the heatmap lines up with
  the photo as viewers display it. HEIF rotations are applied by libheif itself.
- Alpha is composited over white (what a viewer shows on a page); palette, 16-bit,
  grayscale, CMYK and friends become RGB uint8.

Every failure is an `InputError` carrying the HTTP status, a stable code and a message.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pillow_heif
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

# Formats a client may send (Pillow's format names). HEIF covers .heic and .heif.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "HEIF")

# We enforce our own limit from the header; Pillow's warning would only add noise.
Image.MAX_IMAGE_PIXELS = None


class InputError(Exception):
    """A problem with what the client sent: status is the HTTP status, code a stable identifier."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass(frozen=True)
class ImageMetadata:
    format: str
    width: int  # as displayed (after orientation)
    height: int
    original_width: int  # as stored in the file
    original_height: int
    mode: str  # Pillow mode of the stored pixels, e.g. "RGB", "RGBA", "I;16", "CMYK"
    orientation: int | None  # EXIF orientation tag, 1..8, None when absent
    orientation_applied: bool
    has_alpha: bool
    camera: str | None
    software: str | None
    captured: str | None  # EXIF DateTimeOriginal (or DateTime), as written by the camera

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8 [height, width, 3], C-contiguous
    metadata: ImageMetadata


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 1) -> DecodedImage:
    """Decode one image. Raises InputError (415 unknown format, 413 too many pixels, 422 corrupt)."""
    if not data:
        raise InputError(422, "empty_image", "the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise InputError(
            415, "unsupported_format",
            f"not a supported image: expected one of {', '.join(ALLOWED_FORMATS)} (format read from the bytes)",
        ) from None
    except Exception as exc:  # a recognised header that does not parse
        raise InputError(422, "corrupt_image", f"cannot read the image header: {exc}") from None

    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            413, "too_many_pixels",
            f"image declares {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    if min(width, height) < min_side:
        raise InputError(422, "image_too_small", f"image is {width}x{height}; both sides must be >= {min_side}")

    orientation, camera, software, captured = read_exif_basics(image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
    except Exception as exc:  # truncated or corrupt pixel data: Pillow raises OSError, SyntaxError, ValueError...
        raise InputError(422, "corrupt_image", f"cannot decode the {image.format} pixel data: {exc}") from None

    image_format = image.format or "unknown"
    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    applied = False
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        try:
            image = ImageOps.exif_transpose(image)
            applied = True
        except Exception:  # a broken EXIF block must not lose the image; keep it as stored
            applied = False
    try:
        rgb = to_rgb_array(image)
    except Exception as exc:
        raise InputError(422, "corrupt_image", f"cannot convert {mode} pixels to RGB: {exc}") from None
    metadata = ImageMetadata(
        format=image_format,
        width=rgb.shape[1],
        height=rgb.shape[0],
        original_width=width,
        original_height=height,
        mode=mode,
        orientation=orientation,
        orientation_applied=applied,
        has_alpha=has_alpha,
        camera=camera,
        software=software,
        captured=captured,
    )
    return DecodedImage(rgb=rgb, metadata=metadata)


def declared_pixels(data: bytes) -> int:
    """Width x height as the header declares it, without decoding; 0 when the header cannot be
    read (decode_image then refuses the data without decoding any pixel either)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            width, height = image.size
    except Exception:
        return 0
    return width * height


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 [H, W, 3]. High bit depths are scaled, not clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0  # float images in 0..1
        elif mode != "F":
            values = values / 257.0  # 16-bit range (Pillow holds 16-bit PNG/TIFF gray in I or I;16)
        gray = np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def read_exif_basics(image: Image.Image) -> tuple[int | None, str | None, str | None, str | None]:
    """Orientation, camera, software, capture date. Broken EXIF yields Nones, never an error."""
    try:
        exif = image.getexif()
        orientation = exif.get(ExifTags.Base.Orientation)
        orientation = int(orientation) if orientation is not None else None
        if orientation is not None and not 1 <= orientation <= 8:
            orientation = None
        make = _text(exif.get(ExifTags.Base.Make))
        model = _text(exif.get(ExifTags.Base.Model))
        software = _text(exif.get(ExifTags.Base.Software))
        try:
            sub = exif.get_ifd(ExifTags.IFD.Exif)
        except Exception:
            sub = {}
        captured = _text(sub.get(ExifTags.Base.DateTimeOriginal)) or _text(exif.get(ExifTags.Base.DateTime))
    except Exception:
        return None, None, None, None
    camera = model
    if make and model and not model.lower().startswith(make.split()[0].lower()):
        camera = f"{make} {model}"
    elif make and not model:
        camera = make
    return orientation, camera, software, captured


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).replace("\x00", " ").split())
    return text[:200] or None
