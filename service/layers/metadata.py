"""Metadata: what the file says about itself, and where that story does not hold together.

- EXIF (camera, settings, dates, software, GPS), read by Pillow; XMP (the packet editors
  write: CreatorTool, dates, the xmpMM:History of saves and edits); IPTC (captions, credits,
  the originating program).
- The embedded EXIF thumbnail against the photo: cameras write both at capture, most editors
  rewrite the photo but leave the thumbnail alone, so a thumbnail that differs (content, or
  aspect ratio: a crop) means the pixels changed after capture.
- Capture vs modification dates, and software tags naming an editor.

None of this proves anything alone: metadata is easy to strip or forge. It is evidence that
agrees or disagrees with the pixels.
"""
from __future__ import annotations

import io
import re
import warnings
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from typing import Any

import numpy as np
from PIL import ExifTags, Image, IptcImagePlugin

from service.layers.base import LayerResult, NotApplicable, Photo

NAME = "metadata"
MAX_XMP_BYTES = 1 << 20
MAX_THUMBNAIL_BYTES = 256 * 1024
MAX_VALUE_CHARS = 200
EDITORS = ("photoshop", "gimp", "lightroom", "snapseed", "paint", "affinity", "pixelmator", "capture one",
           "darktable", "rawtherapee", "picasa", "facetune", "canva", "photoscape", "paint.net", "luminar",
           "acdsee", "corel", "fotor", "pixlr", "meitu", "vsco", "imagemagick", "photos")
# Thumbnail verdict thresholds, in 8-bit levels after matching brightness and contrast.
THUMB_MEAN_LIMIT = 6.0
THUMB_REGION_LIMIT = 40.0
IPTC_NAMES = {
    (2, 5): "object_name", (2, 25): "keywords", (2, 55): "date_created", (2, 60): "time_created",
    (2, 65): "originating_program", (2, 70): "program_version", (2, 80): "byline", (2, 90): "city",
    (2, 101): "country", (2, 105): "headline", (2, 110): "credit", (2, 115): "source",
    (2, 116): "copyright", (2, 120): "caption",
}
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _text(value: Any) -> Any:
    """A tag's value in JSON terms, bounded: bytes as text when printable, else their length."""
    if isinstance(value, bytes):
        stripped = value.rstrip(b"\x00")
        if stripped and all(32 <= b < 127 or b in (9, 10, 13) for b in stripped):
            return stripped.decode("ascii")[:MAX_VALUE_CHARS]
        return f"<{len(value)} bytes>"
    if isinstance(value, tuple):
        return [_text(item) for item in value[:16]]
    if isinstance(value, (int, str)):
        return value[:MAX_VALUE_CHARS] if isinstance(value, str) else value
    try:
        number = float(value)  # IFDRational
        return round(number, 6) if np.isfinite(number) else str(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return str(value)[:MAX_VALUE_CHARS]


def read_exif(image: Image.Image) -> tuple[dict, dict, dict, dict]:
    """(IFD0, Exif IFD, GPS IFD, IFD1) as {tag name: value}; broken blocks give what could be read."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a broken EXIF block is no EXIF
        return {}, {}, {}, {}
    blocks = [{k: v for k, v in exif.items() if k not in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo)}]
    for ifd, names in ((ExifTags.IFD.Exif, ExifTags.TAGS), (ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS),
                       (ExifTags.IFD.IFD1, ExifTags.TAGS)):
        try:
            blocks.append(dict(exif.get_ifd(ifd)))
        except Exception:  # noqa: BLE001
            blocks.append({})
    named = []
    for index, block in enumerate(blocks):
        names = ExifTags.GPSTAGS if index == 2 else ExifTags.TAGS
        named.append({str(names.get(tag, f"0x{tag:04x}")): _text(value) for tag, value in block.items()
                      if tag != 0x927C})  # MakerNote: vendor binary, large
    named[3]["_raw"] = blocks[3]
    return named[0], named[1], named[2], named[3]


def read_xmp(image: Image.Image) -> dict:
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if not packet:
        return {}
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    if len(packet) > MAX_XMP_BYTES:
        return {"error": f"XMP packet of {len(packet)} bytes not parsed (limit {MAX_XMP_BYTES})"}
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return {"error": "XMP packet declares a DTD or entities; not parsed"}
    try:
        root = ElementTree.fromstring(packet.strip(b"\x00 \n\r\t"))
    except ElementTree.ParseError as error:
        return {"error": f"XMP packet is not well-formed XML ({error})"}
    wanted = {"CreatorTool", "CreateDate", "ModifyDate", "MetadataDate", "DateCreated", "DocumentID",
              "OriginalDocumentID", "InstanceID", "Credit", "Source", "Headline"}
    fields: dict[str, Any] = {}
    history: list[dict] = []
    for element in root.iter():
        local = element.tag.rsplit("}", 1)[-1]
        if local in wanted and (element.text or "").strip():
            fields.setdefault(local, element.text.strip()[:MAX_VALUE_CHARS])
        for attribute, value in element.attrib.items():
            name = attribute.rsplit("}", 1)[-1]
            if name in wanted:
                fields.setdefault(name, value[:MAX_VALUE_CHARS])
        if local == "History":
            for item in element.iter():
                if item.tag.rsplit("}", 1)[-1] != "li":
                    continue
                event = {k.rsplit("}", 1)[-1]: v[:MAX_VALUE_CHARS] for k, v in item.attrib.items()}
                event.update({child.tag.rsplit("}", 1)[-1]: (child.text or "").strip()[:MAX_VALUE_CHARS]
                              for child in item if (child.text or "").strip()})
                if event:
                    history.append({key: event[key] for key in ("action", "when", "softwareAgent", "changed")
                                    if key in event})
    if history:
        fields["history"] = history[:50]
    return fields


def read_iptc(image: Image.Image) -> dict:
    try:
        info = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception:  # noqa: BLE001
        return {}
    answer = {}
    for key, value in info.items():
        name = IPTC_NAMES.get(key)
        if name is None:
            continue
        values = value if isinstance(value, list) else [value]
        texts = [v.decode("utf-8", "replace")[:MAX_VALUE_CHARS] for v in values if isinstance(v, bytes)]
        answer[name] = texts if len(texts) > 1 else (texts[0] if texts else None)
    return answer


def _parse_date(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    match = re.match(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):?(\d{2})?", text.strip())
    if not match:
        return None
    try:
        return datetime(*(int(part or 0) for part in match.groups()))
    except ValueError:
        return None


def compare_thumbnail(raw_exif: bytes, ifd1: dict, photo: Photo) -> dict | None:
    """The embedded EXIF thumbnail against the photo, or None when there is none."""
    offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
    if not isinstance(offset, int) or not isinstance(length, int) or length <= 0:
        return None
    start = 6 + offset  # the offset counts from the TIFF header, after "Exif\0\0"
    data = raw_exif[start:start + length]
    if len(data) != length or length > MAX_THUMBNAIL_BYTES:
        return {"present": True, "readable": False, "reason": "thumbnail offset or length out of range"}
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as thumbnail:
            if thumbnail.size[0] * thumbnail.size[1] > 1_000_000:
                raise ValueError("thumbnail too large")
            thumbnail = thumbnail.convert("L")
            if photo.orientation in _TRANSPOSE:
                thumbnail = thumbnail.transpose(_TRANSPOSE[photo.orientation])
            small = np.asarray(thumbnail, dtype=np.float32)
    except Exception as error:  # noqa: BLE001
        return {"present": True, "readable": False, "reason": f"thumbnail does not decode ({error})"}
    small = _trim_letterbox(small, photo.rgb.shape[1] / photo.rgb.shape[0])
    if min(small.shape) < 8:
        return {"present": True, "readable": True, "verdict": "thumbnail too small to compare"}
    height, width = photo.rgb.shape[:2]
    thumb_ratio, photo_ratio = small.shape[1] / small.shape[0], width / height
    aspect_differs = abs(np.log(thumb_ratio / photo_ratio)) > 0.06
    luma = Image.fromarray(photo.rgb).convert("L").resize((small.shape[1], small.shape[0]), Image.Resampling.BOX)
    big = np.asarray(luma, dtype=np.float32)
    # Match brightness and contrast: thumbnails are rendered with other tone curves.
    a = (small - small.mean()) / max(small.std(), 1e-3)
    b = (big - big.mean()) / max(big.std(), 1e-3)
    # Compared as region means (about 1/16 of the thumbnail's side): thumbnails are sharpened and
    # aliased differently from the photo, which fine texture turns into pixel differences.
    cell = max(2, min(a.shape) // 16)
    rows_n, cols_n = a.shape[0] // cell, a.shape[1] // cell

    def cells(values: np.ndarray) -> np.ndarray:
        return values[:rows_n * cell, :cols_n * cell].reshape(rows_n, cell, cols_n, cell).mean(axis=(1, 3))

    regions = np.abs(cells(a) - cells(b)) * big.std()
    mean_difference, worst_region = float(regions.mean()), float(regions.max())
    if aspect_differs:
        verdict = "differs: another aspect ratio than the photo (cropped or rotated after capture)"
    elif mean_difference > THUMB_MEAN_LIMIT or worst_region > THUMB_REGION_LIMIT:
        verdict = "differs: the photo's content changed after the thumbnail was written"
    else:
        verdict = "consistent with the photo"
    return {
        "present": True, "readable": True, "width": int(small.shape[1]), "height": int(small.shape[0]),
        "mean_difference": round(mean_difference, 2), "worst_region_difference": round(worst_region, 2),
        "aspect_differs": bool(aspect_differs), "consistent": verdict.startswith("consistent"), "verdict": verdict,
    }


def _trim_letterbox(thumbnail: np.ndarray, photo_ratio: float) -> np.ndarray:
    """Cameras pad thumbnails to 160x120 with uniform bars (a 3:2 photo in a 4:3 thumbnail). Bars are
    removed only when the thumbnail's aspect ratio is off and uniform rows or columns at its edges
    explain it: dark content inside the picture is never cut."""
    def uniform(lines: np.ndarray) -> np.ndarray:
        return lines.std(axis=1) < 3.0

    ratio = thumbnail.shape[1] / thumbnail.shape[0]
    if abs(np.log(ratio / photo_ratio)) <= 0.06:
        return thumbnail
    axis_lines = thumbnail if ratio < photo_ratio else thumbnail.T  # bars above/below, or left/right
    flat = uniform(axis_lines)
    top = int(np.argmin(flat)) if not flat.all() else 0
    bottom = int(np.argmin(flat[::-1])) if not flat.all() else 0
    trimmed = axis_lines[top:len(axis_lines) - bottom]
    return trimmed if ratio < photo_ratio else trimmed.T


def analyse(photo: Photo) -> LayerResult:
    try:
        image = Image.open(io.BytesIO(photo.data))
    except Exception as error:  # noqa: BLE001
        raise NotApplicable(f"the container cannot be read for metadata ({type(error).__name__})") from None
    with image, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about malformed tags; what can be read is used
        ifd0, exif_ifd, gps, ifd1 = read_exif(image)
        raw_ifd1 = ifd1.pop("_raw", {})
        xmp = read_xmp(image)
        iptc = read_iptc(image)
        raw_exif = image.info.get("exif") or b""
    if not (ifd0 or exif_ifd or xmp or iptc):
        raise NotApplicable("the file carries no EXIF, XMP or IPTC metadata (stripped, as social networks and "
                            "messaging apps do, or never written)")
    thumbnail = compare_thumbnail(raw_exif, raw_ifd1, photo) if raw_exif.startswith(b"Exif") else None
    captured = exif_ifd.get("DateTimeOriginal") or exif_ifd.get("DateTimeDigitized") or xmp.get("CreateDate")
    modified = ifd0.get("DateTime") or xmp.get("ModifyDate")
    capture_time, modify_time = _parse_date(captured), _parse_date(modified)
    software = [s for s in (ifd0.get("Software"), xmp.get("CreatorTool")) if isinstance(s, str) and s.strip()]
    software += [event["softwareAgent"] for event in xmp.get("history", []) if event.get("softwareAgent")]
    software = list(dict.fromkeys(software))
    editors = [s for s in software if any(editor in s.lower() for editor in EDITORS)]
    findings = []
    if editors:
        findings.append(f"software tags name an editor: {', '.join(editors[:3])}")
    if capture_time and modify_time and abs((modify_time - capture_time).total_seconds()) >= 60:
        findings.append(f"modified ({modified}) after capture ({captured})")
    if thumbnail and thumbnail.get("readable") and thumbnail.get("consistent") is False:
        findings.append(f"EXIF thumbnail {thumbnail['verdict']}")
    if xmp.get("history"):
        findings.append(f"XMP history records {len(xmp['history'])} event(s)")
    camera = " ".join(str(part) for part in (ifd0.get("Make"), ifd0.get("Model")) if part) or None
    summary = {
        "camera": camera,
        "captured": captured,
        "modified": modified,
        "software": software,
        "editors": editors,
        "thumbnail": thumbnail,
        "findings": findings,
        "gps": {k: gps[k] for k in ("GPSLatitudeRef", "GPSLatitude", "GPSLongitudeRef", "GPSLongitude") if k in gps}
        or None,
        "exif": {**ifd0, **exif_ifd},
        "xmp": xmp,
        "iptc": iptc,
    }
    return LayerResult(name=NAME, applicable=True, summary=summary)
