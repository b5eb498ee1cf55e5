"""Hostile files, built in code: bombs, truncations, polyglots, metadata floods, odd shapes.

Every generator returns bytes and is deterministic. `catalogue()` names each case with
what the service may answer:

- "reject": a 4xx JSON error is the only right answer (a bomb, an unsupported format...);
- "accept": a valid result (200) is the right answer (odd but legitimate images);
- "either": a 4xx JSON error or a valid result are both fine (a corrupted file that a
  decoder may or may not recover from); never a 5xx, a hang or a crash.

Header-patching bombs are small files whose header declares a huge canvas: the service
must refuse them from the header, before decoding a pixel. "Within-limit" bombs are
small files that really decompress to many pixels, just under the pixel limit: the
service may decode them, and the memory they take is what tests/e2e/test_hostile_inputs.py
bounds.
"""
from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
import psutil
from PIL import Image

SEED = 7


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    expect: str  # "reject" | "accept" | "either"
    statuses: tuple[int, ...] = ()  # for "reject": the 4xx statuses that are right, () = any 4xx
    raw: bool = False  # send as the raw request body instead of multipart field `image`
    content_type: str | None = None  # raw bodies: the Content-Type header to send
    filename: str = "upload.jpg"
    tags: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------- plain images
def photo(width: int = 96, height: int = 64, mode: str = "RGB") -> Image.Image:
    """A small deterministic image with structure (gradients and noise), in any mode."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), (x + y) % 256], axis=2)
    rgb = np.clip(rgb + rng.integers(-20, 20, rgb.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def sample_files() -> dict[str, bytes]:
    """One small valid file per supported format that Pillow can write (HEIC comes from shared data)."""
    image = photo()
    return {
        "jpeg": encode(image, "JPEG", quality=90),
        "png": encode(image, "PNG"),
        "webp": encode(image, "WEBP", quality=80),
        "webp_lossless": encode(image, "WEBP", lossless=True),
        "tiff": encode(image, "TIFF"),
        "tiff_lzw": encode(image, "TIFF", compression="tiff_lzw"),
        "bmp": encode(image, "BMP"),
    }


# ---------------------------------------------------------------------------- PNG
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG whose IHDR declares width x height RGB, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 64))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_deflate_bomb(width: int, height: int) -> bytes:
    """A real grayscale PNG of width x height zero pixels: a few hundred KB that inflate to width*height bytes."""
    row = b"\x00" * (width + 1)  # filter byte + pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def png_with_chunks(extra: list[tuple[bytes, bytes]], before_idat: bool = True) -> bytes:
    """A valid small PNG with extra chunks spliced in before IDAT (or after it)."""
    base = encode(photo(32, 32), "PNG")
    marker = base.index(b"IDAT") - 4 if before_idat else base.index(b"IEND") - 4
    return base[:marker] + b"".join(_png_chunk(k, d) for k, d in extra) + base[marker:]


def png_ztxt_bomb(inflated: int = 256 * 1024 * 1024) -> bytes:
    """A zTXt chunk that inflates to `inflated` bytes (a text-chunk decompression bomb)."""
    compressor = zlib.compressobj(9)
    block = b"\x00" * (1024 * 1024)
    data = b"".join(compressor.compress(block) for _ in range(inflated // len(block))) + compressor.flush()
    return png_with_chunks([(b"zTXt", b"Comment\x00\x00" + data)])


def png_iccp_bomb(inflated: int = 256 * 1024 * 1024) -> bytes:
    compressor = zlib.compressobj(9)
    block = b"\x00" * (1024 * 1024)
    data = b"".join(compressor.compress(block) for _ in range(inflated // len(block))) + compressor.flush()
    return png_with_chunks([(b"iCCP", b"evil\x00\x00" + data)])


def png_many_text_chunks(count: int = 20000) -> bytes:
    return png_with_chunks([(b"tEXt", b"k%d\x00%s" % (i, b"v" * 100)) for i in range(count)])


def png_huge_exif(size: int = 4 * 1024 * 1024) -> bytes:
    """An eXIf chunk of `size` bytes: a little-endian TIFF header, then junk."""
    return png_with_chunks([(b"eXIf", b"II*\x00\x08\x00\x00\x00" + b"\xff" * (size - 8))])


def apng(frames: int = 12) -> bytes:
    images = [photo(48, 48).rotate(i * 30) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PNG", save_all=True, append_images=images[1:], duration=40, loop=0)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- GIF
def gif_declaring(width: int = 65535, height: int = 65535) -> bytes:
    """GIF89a with a 65535x65535 logical screen and one 1x1 frame (GIF is not a supported format)."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def animated_gif(frames: int = 10) -> bytes:
    images = [photo(40, 40).rotate(i * 36).convert("P") for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- TIFF
def tiff_declaring(width: int, height: int, ifd_loop: bool = False) -> bytes:
    """Little-endian grayscale TIFF whose IFD declares width x height with one tiny strip.
    ifd_loop: the next-IFD pointer points back at the IFD itself (an infinite page chain)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = ifd_offset + ifd_size
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = strip_offset
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    body += struct.pack("<I", ifd_offset if ifd_loop else 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + body + b"\x80" * 16


def multipage_tiff(pages: int = 8) -> bytes:
    images = [photo(40, 40).rotate(i * 40) for i in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


# ---------------------------------------------------------------------------- WebP
def webp_vp8_declaring(width: int = 16383, height: int = 16383) -> bytes:
    """A lossy WebP whose VP8 key-frame header declares width x height (14-bit fields)."""
    data = bytearray(encode(photo(16, 16), "WEBP", quality=50))
    start = data.index(b"VP8 ") + 8  # chunk payload: 3-byte frame tag, start code 9d 01 2a, sizes
    assert data[start + 3 : start + 6] == b"\x9d\x01\x2a"
    struct.pack_into("<HH", data, start + 6, width & 0x3FFF, height & 0x3FFF)
    return bytes(data)


def webp_vp8x_declaring(width: int = 16384, height: int = 16384) -> bytes:
    """An extended WebP (VP8X, here with EXIF) whose canvas is declared width x height."""
    exif = Image.Exif()
    exif[0x010E] = "hostile canvas"
    data = bytearray(encode(photo(16, 16), "WEBP", quality=50, exif=exif.tobytes()))
    start = data.index(b"VP8X") + 8 + 4  # after the flags word: 24-bit width-1, 24-bit height-1
    data[start : start + 3] = (width - 1).to_bytes(3, "little")
    data[start + 3 : start + 6] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def webp_huge_exif(size: int = 4 * 1024 * 1024) -> bytes:
    return encode(photo(32, 32), "WEBP", quality=60, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00" + b"\xee" * size)


def animated_webp(frames: int = 10) -> bytes:
    images = [photo(48, 48).rotate(i * 36) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=50, loop=0, quality=50)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- JPEG
def jpeg_declaring(width: int = 65535, height: int = 65535) -> bytes:
    """A baseline JPEG whose SOF0 declares width x height (the scan data is for 16x16)."""
    data = bytearray(encode(photo(16, 16), "JPEG", quality=75))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_with_segments(segments: list[tuple[int, bytes]], image: Image.Image | None = None) -> bytes:
    """A JPEG with extra APPn/COM segments inserted right after SOI (each payload <= 65533 bytes)."""
    data = encode(image or photo(48, 32), "JPEG", quality=85)
    extra = b"".join(b"\xff" + bytes([marker]) + struct.pack(">H", len(p) + 2) + p for marker, p in segments)
    return data[:2] + extra + data[2:]


def jpeg_huge_exif() -> bytes:
    """The largest EXIF an APP1 segment holds (64 KB), in thousands of IFD entries."""
    exif = Image.Exif()
    exif[0x010E] = "A" * 30000  # ImageDescription
    exif[0x0131] = "S" * 20000  # Software
    exif[0x010F] = "M" * 10000  # Make
    payload = b"Exif\x00\x00" + exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    return encode(photo(48, 32), "JPEG", quality=85, exif=payload[:65000])


def jpeg_exif_loop() -> bytes:
    """EXIF whose IFD0 next-pointer and ExifIFD pointer point back at IFD0 (a cycle)."""
    tiff = bytearray(b"II*\x00\x08\x00\x00\x00")
    entries = [(0x0112, 3, 1, 6), (0x8769, 4, 1, 8)]  # Orientation 6, ExifIFD -> IFD0 itself
    tiff += struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        tiff += struct.pack("<HHI", tag, kind, count) + packed
    tiff += struct.pack("<I", 8)  # next IFD: IFD0 again
    return jpeg_with_segments([(0xE1, b"Exif\x00\x00" + bytes(tiff))])


def jpeg_many_app_segments(count: int = 90, size: int = 65000) -> bytes:
    """Dozens of full-size APP segments (about 6 MB of metadata around a tiny picture)."""
    return jpeg_with_segments([(0xE0 + (i % 14) + 1, bytes([i % 256]) * size) for i in range(count)])


def jpeg_huge_icc(size: int = 1024 * 1024) -> bytes:
    """A 1 MB (junk) ICC profile, split by Pillow across sixteen APP2 segments."""
    return encode(photo(48, 32), "JPEG", quality=85, icc_profile=b"\x00\x00\x00\x00junk" + b"\x5a" * size)


def cmyk_jpeg() -> bytes:
    return encode(photo(64, 48, "CMYK"), "JPEG", quality=90)


# ---------------------------------------------------------------------------- BMP
def bmp_declaring(width: int = 50000, height: int = -50000) -> bytes:
    """A BMP whose info header declares width x height (negative height = top-down)."""
    data = bytearray(encode(photo(8, 8), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


# ---------------------------------------------------------------------------- HEIC
def heic_declaring(data: bytes, width: int = 60000, height: int = 60000) -> bytes:
    """A real HEIC with every `ispe` (image spatial extent) box rewritten to width x height."""
    out = bytearray(data)
    start = 0
    while (at := out.find(b"ispe", start)) != -1:
        struct.pack_into(">II", out, at + 8, width, height)  # after 'ispe' + version/flags
        start = at + 4
    return bytes(out)


# ---------------------------------------------------------------------------- damage
def truncations(data: bytes) -> dict[str, bytes]:
    return {
        "header_only": data[:24],
        "half": data[: len(data) // 2],
        "all_but_tail": data[: max(1, len(data) - 16)],
    }


def corrupted(data: bytes, flips: int = 40) -> bytes:
    """Overwrite `flips` bytes past the first quarter (headers mostly survive, pixel data does not)."""
    rng = np.random.default_rng(SEED)
    out = bytearray(data)
    positions = rng.integers(len(data) // 4, len(data), flips)
    for pos in positions:
        out[pos] = int(rng.integers(0, 256))
    return bytes(out)


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.txt", "not an image " * 100)
        archive.writestr("run.sh", "#!/bin/sh\necho owned\n")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- the catalogue
def catalogue(heic: bytes | None = None) -> list[Case]:
    """Every hostile case sent to the live server (heic: a real HEIC file to damage and patch)."""
    files = sample_files()
    cases: list[Case] = []
    add = cases.append
    any4xx = ()

    # Decompression bombs: a small file declaring a huge canvas -> 413 from the header.
    add(Case("png_bomb_30000x30000", png_declaring(30000, 30000), "reject", (413,), tags=("bomb",)))
    add(Case("png_bomb_2^31-1_wide", png_declaring(2**31 - 1, 1), "reject", (413, 422), tags=("bomb",)))
    add(Case("png_bomb_max_u32", png_declaring(0xFFFFFFFF, 0xFFFFFFFF), "reject", any4xx, tags=("bomb",)))
    add(Case("gif_bomb_65535x65535", gif_declaring(), "reject", (413, 415), tags=("bomb",)))
    add(Case("tiff_bomb_100000x100000", tiff_declaring(100000, 100000), "reject", (413,), tags=("bomb",)))
    add(Case("tiff_ifd_loop", tiff_declaring(64, 64, ifd_loop=True), "either", tags=("bomb",)))
    add(Case("webp_vp8_bomb_16383x16383", webp_vp8_declaring(), "reject", (413, 422), tags=("bomb",)))
    add(Case("webp_vp8x_bomb_16384x16384", webp_vp8x_declaring(), "reject", (413, 422), tags=("bomb",)))
    add(Case("jpeg_bomb_65535x65535", jpeg_declaring(), "reject", (413,), tags=("bomb",)))
    add(Case("bmp_bomb_50000x-50000", bmp_declaring(), "reject", (413, 422), tags=("bomb",)))
    add(Case("bmp_bomb_2^31-1", bmp_declaring(2**31 - 1, 2**31 - 1), "reject", any4xx, tags=("bomb",)))
    # A real deflate bomb just under the default pixel limit: 200 KB inflating to 64 M pixels.
    add(Case("png_deflate_bomb_8000x8000", png_deflate_bomb(8000, 8000), "either", tags=("bomb", "memory")))
    # Metadata bombs.
    add(Case("png_ztxt_bomb_256MiB", png_ztxt_bomb(), "either", tags=("bomb",)))
    add(Case("png_iccp_bomb_256MiB", png_iccp_bomb(), "either", tags=("bomb",)))
    if heic is not None:
        add(Case("heic_bomb_60000x60000", heic_declaring(heic), "reject", (413, 422), tags=("bomb",)))

    # Truncated and corrupted files of every supported format.
    if heic is not None:
        files = {**files, "heic": heic}
    for fmt, data in files.items():
        for how, part in truncations(data).items():
            add(Case(f"{fmt}_truncated_{how}", part, "either", tags=("truncated",)))
        add(Case(f"{fmt}_corrupted", corrupted(data), "either", tags=("corrupted",)))

    # Empty bodies, as a multipart file and as a raw body.
    add(Case("zero_bytes_multipart", b"", "reject", (422,)))
    add(Case("zero_bytes_raw", b"", "reject", (422,), raw=True, content_type="image/jpeg"))

    # Wrong Content-Type: the format comes from the bytes, so a JPEG labelled JSON is still a JPEG...
    add(Case("jpeg_labelled_json", files["jpeg"], "accept", raw=True, content_type="application/json"))
    # ...and text labelled as a JPEG is still text.
    add(Case("text_labelled_jpeg", b"just some text, not a photo\n" * 20, "reject", (415,), raw=True,
             content_type="image/jpeg"))
    add(Case("text_named_jpg", b"GIF? no. PNG? no. Just text.\n", "reject", (415,), filename="photo.jpg"))
    # A multipart Content-Type on a raw JPEG body, and one without a boundary.
    add(Case("jpeg_labelled_multipart", files["jpeg"], "reject", any4xx, raw=True,
             content_type="multipart/form-data; boundary=nothing-here"))
    add(Case("multipart_without_boundary", files["jpeg"], "reject", any4xx, raw=True,
             content_type="multipart/form-data"))

    # Polyglots.
    add(Case("polyglot_jpeg_zip", files["jpeg"] + zip_archive(), "accept", tags=("polyglot",)))
    add(Case("polyglot_png_elf", files["png"] + b"\x7fELF" + b"\x00" * 60, "accept", tags=("polyglot",)))
    add(Case("polyglot_jpeg_script_comment",
             jpeg_with_segments([(0xFE, b"<script>alert(1)</script><?php system($_GET['c']); ?>")]),
             "accept", tags=("polyglot",)))
    add(Case("polyglot_gif_zip", animated_gif(2) + zip_archive(), "reject", (415,), tags=("polyglot",)))
    add(Case("polyglot_html_then_jpeg", b"<html><script>alert(1)</script></html>\n" + files["jpeg"], "reject",
             (415,), tags=("polyglot",)))
    add(Case("polyglot_pdf_with_jpeg", b"%PDF-1.4\n1 0 obj<</Type/XObject/Subtype/Image>>stream\n" + files["jpeg"]
             + b"\nendstream endobj\n%%EOF\n", "reject", (415,), tags=("polyglot",)))
    add(Case("svg_with_script", b'<svg xmlns="http://www.w3.org/2000/svg" width="9e9" height="9e9">'
             b"<script>alert(1)</script></svg>", "reject", (415,), filename="x.svg", tags=("polyglot",)))

    # Huge metadata.
    add(Case("jpeg_exif_64KiB", jpeg_huge_exif(), "accept", tags=("metadata",)))
    add(Case("jpeg_exif_ifd_loop", jpeg_exif_loop(), "accept", tags=("metadata",)))
    add(Case("jpeg_90_app_segments_6MB", jpeg_many_app_segments(), "either", tags=("metadata",)))
    add(Case("jpeg_icc_1MiB", jpeg_huge_icc(), "accept", tags=("metadata",)))
    add(Case("png_20000_text_chunks", png_many_text_chunks(), "either", tags=("metadata",)))
    add(Case("png_exif_4MiB", png_huge_exif(), "either", tags=("metadata",)))
    add(Case("webp_exif_4MiB", webp_huge_exif(), "either", tags=("metadata",)))

    # Animated and multi-page images (the first frame is analysed, or a clear refusal).
    add(Case("animated_gif", animated_gif(), "reject", (415,), tags=("animated",)))
    add(Case("animated_webp", animated_webp(), "either", tags=("animated",)))
    add(Case("apng", apng(), "either", tags=("animated",)))
    add(Case("multipage_tiff", multipage_tiff(), "either", tags=("animated",)))

    # Colour models and shapes.
    add(Case("cmyk_jpeg", cmyk_jpeg(), "accept"))
    add(Case("1x1_png", encode(photo(1, 1), "PNG"), "reject", (422,), tags=("shape",)))
    add(Case("1x100000_png", encode(Image.new("L", (1, 100000), 128), "PNG"), "reject", (422,), tags=("shape",)))
    add(Case("100000x1_png", encode(Image.new("L", (100000, 1), 128), "PNG"), "reject", (422,), tags=("shape",)))
    add(Case("8x4000_png", encode(photo(8, 4000), "PNG"), "accept", tags=("shape",)))
    return cases


# ---------------------------------------------------------------------------- measuring
class RssSampler:
    """Samples a process's resident set size every 20 ms in a background thread."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
                self.samples += 1
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak
