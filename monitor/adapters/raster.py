"""Read a scene's assets onto a city's grid (rasterio + GDAL): the only place that opens COGs.

Each asset is warped on the fly (``WarpedVRT``) onto the fixed city grid, so only the
source blocks that cover the city are read: a 110 km tile costs what the city costs.
Reflectance bands use bilinear resampling, classification layers (SCL) use nearest.
Every rasterio/GDAL failure becomes a :class:`SceneReadError` naming the scene and asset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT

from monitor.domain.events import SceneData
from monitor.domain.grid import CityGrid
from monitor.domain.masks import s1_valid_mask, s2_valid_mask
from monitor.errors import SceneReadError
from monitor.ports import SceneRaster

__all__ = ["RasterioSceneReader", "SceneRaster"]

log = logging.getLogger(__name__)

S2_REFLECTANCE_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
S1_BANDS = ("vv", "vh")

_GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # COGs: no sidecar listing round-trips
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.jp2",
    "VSI_CACHE": "TRUE",
}


def _href(href: str) -> str:
    if href.startswith("file://"):
        return href[len("file://"):]
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://"):]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href


class RasterioSceneReader:
    """Implements the scene-reader port with rasterio."""

    def __init__(self, *, max_read_pixels: int = 60_000_000) -> None:
        self.max_read_pixels = max_read_pixels

    def read_band(self, scene: SceneData, band: str, grid: CityGrid,
                  resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """One asset on the grid: (values float32 with NaN outside/no-data, inside-footprint mask)."""
        asset = scene.assets.get(band)
        if asset is None:
            raise SceneReadError(
                scene.item_id, f"has no '{band}' asset (assets: {sorted(scene.assets)})",
                "check the provider's asset mapping in the configuration")
        path = _href(asset.href)
        transform = Affine(*grid.transform)
        try:
            with rasterio.Env(**_GDAL_ENV), rasterio.open(path) as src:
                if src.crs is None:
                    raise SceneReadError(scene.item_id, f"asset {band} ({asset.href}) has no CRS",
                                         "the file is not georeferenced; the scene was skipped")
                nodata = src.nodata
                with WarpedVRT(src, crs=grid.crs, transform=transform, width=grid.width,
                               height=grid.height, resampling=resampling,
                               src_nodata=nodata, nodata=nodata if nodata is not None else 0,
                               add_alpha=False) as vrt:
                    data = vrt.read(1, masked=True)
        except SceneReadError:
            raise
        except (RasterioError, OSError, ValueError) as exc:
            raise SceneReadError(
                scene.item_id, f"asset {band} ({asset.href}) could not be read: {exc}",
                "the file is missing, corrupt or unreachable; the scene was dead-lettered") from exc
        values = np.asarray(data.filled(np.nan) if np.issubdtype(data.dtype, np.floating)
                            else data.astype(np.float32).filled(np.nan), dtype=np.float32)
        inside = ~np.ma.getmaskarray(data)
        return values, inside

    def read_s2(self, scene: SceneData, grid: CityGrid,
                bands: Sequence[str] = S2_REFLECTANCE_BANDS) -> SceneRaster:
        """Bottom-of-atmosphere reflectance (0..1) with the BOA offset removed, SCL-masked."""
        scl, scl_inside = self.read_band(scene, "scl", grid, Resampling.nearest)
        valid = s2_valid_mask(np.nan_to_num(scl, nan=0).astype(np.uint8)) & scl_inside
        layers = []
        for band in bands:
            raw, inside = self.read_band(scene, band, grid, Resampling.bilinear)
            valid &= inside & (raw > 0)  # DN 0 is no-data in L2A
            layers.append((raw - scene.boa_offset) / 10000.0)
        values = np.stack(layers).astype(np.float32)
        values[:, ~valid] = np.nan
        return SceneRaster(values=values, valid=valid, bands=tuple(bands))

    def read_s1(self, scene: SceneData, grid: CityGrid,
                bands: Sequence[str] = ("vv",)) -> SceneRaster:
        """Backscatter as linear power (gamma0 for RTC), border noise and no-data masked."""
        layers, valid = [], np.ones(grid.shape, dtype=bool)
        for band in bands:
            raw, inside = self.read_band(scene, band, grid, Resampling.bilinear)
            valid &= inside & s1_valid_mask(raw)
            layers.append(raw)
        values = np.stack(layers).astype(np.float32)
        values[:, ~valid] = np.nan
        return SceneRaster(values=values, valid=valid, bands=tuple(bands))

    def read(self, scene: SceneData, grid: CityGrid) -> SceneRaster:
        if scene.modality == "s2":
            return self.read_s2(scene, grid)
        bands = ("vv", "vh") if "vh" in scene.assets else ("vv",)
        return self.read_s1(scene, grid, bands)
