"""PNG encoding with zlib only (no Pillow: the dashboard's layers are plain RGBA arrays,
and one small function is lighter than an imaging dependency).

Writes 8-bit greyscale, grey+alpha, RGB or RGBA, non-interlaced, each row with the 'Up'
filter or 'None', whichever compresses smaller (tried both on images up to 4 MB raw; 'Up'
alone above, as it wins on imagery and map layers with large flat areas).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from monitor.errors import RenderError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_TRY_BOTH_BYTES = 4 * 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray, *, level: int = 6) -> bytes:
    """Encode a uint8 image (H, W), (H, W, 1..4) as PNG bytes."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise RenderError(f"PNG image has dtype {arr.dtype}", "convert to uint8 0..255 first")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOUR_TYPES or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise RenderError(f"PNG image has shape {np.asarray(image).shape}",
                          "give (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA with H, W >= 1")
    height, width, channels = arr.shape
    rows = np.ascontiguousarray(arr).reshape(height, width * channels)
    # Filter 0 (None) and filter 2 (Up: difference to the row above, mod 256).
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 wraps around, which is what PNG wants
    candidates = []
    # Big images: 'Up' alone (it wins on imagery); small ones: whichever is smaller.
    choices = ((0, rows), (2, up)) if rows.size <= _TRY_BOTH_BYTES else ((2, up),)
    for filter_type, data in choices:
        raw = np.empty((height, width * channels + 1), dtype=np.uint8)
        raw[:, 0] = filter_type
        raw[:, 1:] = data
        candidates.append(zlib.compress(raw.tobytes(), level))
    idat = min(candidates, key=len)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPES[channels], 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def decode_png(data: bytes) -> np.ndarray:
    """Decode a PNG written by :func:`encode_png` (8-bit, filters None/Sub/Up/Average/Paeth,
    non-interlaced) to (H, W, C) uint8. For tests and round trips, not a general decoder."""
    if not data.startswith(_SIGNATURE):
        raise RenderError("data is not a PNG (bad signature)", "give PNG bytes")
    pos = len(_SIGNATURE)
    idat = b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace != 0 or colour_type not in _COLOUR_TYPES.values():
                raise RenderError(f"PNG depth {depth}/type {colour_type}/interlace {interlace}",
                                  "only 8-bit non-interlaced grey/RGB(A) PNGs are decoded")
            channels = {v: k for k, v in _COLOUR_TYPES.items()}[colour_type]
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int32)
    for y in range(height):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(stride, dtype=np.int32)
        if f == 0:
            out[y] = line
        elif f == 2:
            out[y] = (line + prev) % 256
        else:
            row = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                a = row[x - channels] if x >= channels else 0
                b = prev[x]
                c = prev[x - channels] if x >= channels else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (line[x] + pred) % 256
            out[y] = row
    return out.astype(np.uint8).reshape(height, width, channels)
