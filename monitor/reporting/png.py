"""PNG bytes from uint8 images, written by rasterio (GDAL's PNG driver): the one PNG path
of the dashboard layers, the report and the API's maps.

Accepts 8-bit greyscale (H, W) or (H, W, 1), grey+alpha (H, W, 2), RGB (H, W, 3) and RGBA
(H, W, 4); :func:`decode_png` reads one back as (H, W, C) (tests and round trips).
"""

from __future__ import annotations

import warnings

import numpy as np
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import MemoryFile

from monitor.errors import RenderError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray, *, level: int = 6) -> bytes:
    """Encode a uint8 image (H, W), (H, W, 1..4) as PNG bytes (zlib ``level``)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise RenderError(f"PNG image has dtype {arr.dtype}", "convert to uint8 0..255 first")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise RenderError(f"PNG image has shape {np.asarray(image).shape}",
                          "give (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA with H, W >= 1")
    height, width, channels = arr.shape
    with warnings.catch_warnings(), MemoryFile() as memfile:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG is a picture
        with memfile.open(driver="PNG", width=width, height=height, count=channels,
                          dtype="uint8", zlevel=level) as dst:
            dst.write(np.moveaxis(arr, -1, 0))
        return bytes(memfile.read())


def decode_png(data: bytes) -> np.ndarray:
    """The (H, W, C) uint8 pixels of PNG ``data``."""
    if not data.startswith(_SIGNATURE):
        raise RenderError("data is not a PNG (bad signature)", "give PNG bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with MemoryFile(data) as memfile, memfile.open() as src:
                return np.moveaxis(src.read(), 0, -1)
        except RasterioIOError as exc:
            raise RenderError(f"PNG data cannot be decoded: {exc}",
                              "give complete PNG bytes") from exc
