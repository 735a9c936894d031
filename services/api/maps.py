"""Time-of-change maps from a city's change state: a GeoTIFF (grid CRS, uint16 days since
the state's epoch, 0 = no change) and a colour PNG (the time-of-change ramp of
``monitor.domain.rendering``, transparent where nothing changed)."""

from __future__ import annotations

from typing import Any

import numpy as np
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from monitor.domain.grid import CityGrid
from monitor.domain.rendering import change_day_range, colour_change_days, day_to_iso
from monitor.domain.vocabulary import DAY_EPOCH, status_code
from monitor.reporting.png import encode_png


def change_day_map(state: Any, statuses: list[str]) -> np.ndarray:
    """uint16 change day where the pixel's status is one of ``statuses``, else 0."""
    keep = np.isin(np.asarray(state.status), [status_code(s) for s in statuses])
    return np.where(keep, np.asarray(state.change_day), 0).astype(np.uint16)


def encode_geotiff(days: np.ndarray, grid: CityGrid, tags: dict[str, str]) -> bytes:
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
               "dtype": "uint16", "crs": f"EPSG:{grid.epsg}",
               "transform": Affine(*grid.transform), "nodata": 0, "compress": "deflate",
               "tiled": grid.width >= 256 and grid.height >= 256}
    with MemoryFile() as memfile:
        with memfile.open(**profile) as dst:
            dst.write(days, 1)
            dst.update_tags(**tags, units=f"days since {DAY_EPOCH.isoformat()}")
            dst.set_band_description(1, "estimated day of change")
        return bytes(memfile.read())


def change_date_png(days: np.ndarray) -> tuple[bytes, tuple[str, str] | None]:
    """RGBA PNG of ``days`` on the ramp from its oldest to its newest change; returns the
    bytes and those two dates (None when nothing changed)."""
    found = change_day_range(days)
    if found is None:
        return encode_png(np.zeros((*days.shape, 4), np.uint8)), None
    lo, hi = found
    rgba = colour_change_days(days, lo, hi, opacity=255)
    return encode_png(rgba), (day_to_iso(lo), day_to_iso(hi))
