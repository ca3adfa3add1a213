"""How many pixels an upload would decode to, read from its header before anything is decoded.

The byte limit (--max-upload-mb) does not bound the memory an image takes once decoded: a
PNG of one colour compresses ~1000:1, so 1.1 MB of PNG was a 20000 x 20000 image that took
4.7 s and ~2.5 GB to decode. cv2.imdecode has no "size only" mode (IMREAD_REDUCED_* decodes
a PNG whole and then shrinks it; only JPEG is decoded small), so the size is read here from
the few header bytes every format puts first:

    PNG    IHDR, the first chunk: width, height as big-endian u32 at bytes 16 and 20
    JPEG   the first SOFn segment (after APPn, DQT, ...): height, width as big-endian u16
    GIF    the logical screen: little-endian u16 at bytes 6 and 8
    BMP    the info header: little-endian i32 at 18 and 22 (negative height: top-down rows)
    WebP   the VP8 / VP8L / VP8X chunk, each with its own packing
    TIFF   tags 256 and 257 of the first IFD (the page imdecode reads)
    PNM    the ASCII header: "P6 <width> <height> ...", with # comments

A header that cannot be read (another format OpenCV knows, or a truncated file) gives None:
the image is then decoded and its size checked afterwards (uploads.decode_image), so the cap
still holds, only without the saving. OpenCV itself refuses anything past
OPENCV_IO_MAX_IMAGE_PIXELS (2^30 pixels) before allocating, whatever the format.
"""

from __future__ import annotations

import re
import struct

SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) that the image in `data` declares, or None where it cannot be read."""
    try:
        for magic, reader in READERS:
            if data.startswith(magic):
                size = reader(data)
                return size if size and size[0] > 0 and size[1] > 0 else None
    except (struct.error, IndexError, ValueError):  # cut short inside the header
        return None
    return None


def _png(data: bytes):
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(data: bytes):
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None  # not a marker where one must be: corrupt
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in SOF_MARKERS:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:  # the image data starts with no frame header before it
            return None
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def _gif(data: bytes):
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes):
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: u16 sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _webp(data: bytes):
    if data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: after a 3-byte frame tag and the start code 9d 01 2a
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte 0x2f
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, 24 bits each, minus one
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    return None


def _tiff(data: bytes):
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    size = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG, stored in place
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"),
                                      data[entry + 8:entry + (10 if kind == 3 else 12)])[0]
    return (size[256], size[257]) if len(size) == 2 else None


PNM_HEADER = re.compile(rb"P[1-6](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")


def _pnm(data: bytes):
    found = PNM_HEADER.match(data[:1024])
    return (int(found[1]), int(found[2])) if found else None


READERS = [
    (b"\x89PNG\r\n\x1a\n", _png), (b"\xff\xd8", _jpeg), (b"GIF8", _gif), (b"BM", _bmp),
    (b"RIFF", _webp), (b"II*\x00", _tiff), (b"MM\x00*", _tiff),
] + [(b"P%d" % n, _pnm) for n in range(1, 7)]
