"""Time-of-change maps from a city's change state: a GeoTIFF (grid CRS, uint16 days since
2014-01-01, 0 = no change) and a colour PNG (old change dark purple -> recent yellow,
transparent where nothing changed)."""

from __future__ import annotations

import warnings
from datetime import date, timedelta
from typing import Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from monitor.domain.grid import CityGrid

EPOCH = date(2014, 1, 1)
STATUS_CODES = {"first": 1, "provisional": 2, "confirmed": 3, "retracted": 4}

# A short viridis-like ramp (dark purple -> teal -> yellow), interpolated.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],
                 dtype=np.float64)


def change_day_map(state: Any, statuses: list[str]) -> np.ndarray:
    """uint16 change day where the pixel's status is one of ``statuses``, else 0."""
    codes = [STATUS_CODES[s] for s in statuses]
    keep = np.isin(np.asarray(state.status), codes)
    return np.where(keep, np.asarray(state.change_day), 0).astype(np.uint16)


def encode_geotiff(days: np.ndarray, grid: CityGrid, tags: dict[str, str]) -> bytes:
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
               "dtype": "uint16", "crs": f"EPSG:{grid.epsg}",
               "transform": Affine(*grid.transform), "nodata": 0, "compress": "deflate",
               "tiled": grid.width >= 256 and grid.height >= 256}
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(days, 1)
            dst.update_tags(**tags, units=f"days since {EPOCH.isoformat()}")
            dst.set_band_description(1, "estimated day of change")
        return bytes(memfile.read())


def encode_png(days: np.ndarray) -> tuple[bytes, tuple[str, str] | None]:
    """RGBA PNG; returns the bytes and the (oldest, newest) change dates on the ramp."""
    h, w = days.shape
    rgba = np.zeros((4, h, w), dtype=np.uint8)
    valid = days > 0
    span = None
    if valid.any():
        lo, hi = int(days[valid].min()), int(days[valid].max())
        t = np.zeros(days.shape, dtype=np.float64)
        t[valid] = (days[valid] - lo) / max(hi - lo, 1)
        pos = t * (len(_RAMP) - 1)
        i = np.clip(pos.astype(int), 0, len(_RAMP) - 2)
        frac = pos - i
        for band in range(3):
            colour = _RAMP[i, band] * (1 - frac) + _RAMP[i + 1, band] * frac
            rgba[band][valid] = colour[valid].astype(np.uint8)
        rgba[3][valid] = 255
        span = ((EPOCH + timedelta(days=lo)).isoformat(), (EPOCH + timedelta(days=hi)).isoformat())
    with warnings.catch_warnings(), MemoryFile() as memfile:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG is a picture
        with memfile.open(driver="PNG", width=w, height=h, count=4, dtype="uint8") as dst:
            dst.write(rgba)
        return bytes(memfile.read()), span
