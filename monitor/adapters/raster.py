"""Read a scene's assets onto a city's grid (rasterio + GDAL): the only place that opens COGs.

Each asset is warped on the fly (``WarpedVRT``) onto the fixed city grid, so only the
source blocks that cover the city are read: a 110 km tile costs what the city costs.
Reflectance bands use bilinear resampling, classification layers (SCL) use nearest.
Every rasterio/GDAL failure becomes a :class:`SceneReadError` naming the scene and asset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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

__all__ = ["AssetPolicy", "RasterioSceneReader", "SceneRaster", "asset_policies"]

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


@dataclass(frozen=True)
class AssetPolicy:
    """Where a provider's asset hrefs may point (``providers.<name>.asset_schemes``,
    ``asset_hosts``, ``local_assets``). GDAL would otherwise open anything: local files,
    ``/vsicurl/`` to any host, ``/vsizip/`` ..."""

    schemes: tuple[str, ...] = ("https", "s3")
    hosts: tuple[str, ...] = ()
    local_files: bool = False

    def problem(self, href: str) -> str | None:
        """Why ``href`` must not be opened (None: it may)."""
        text = href.strip()
        if text.lower().startswith("/vsi") or any(c in text for c in "\r\n\x00"):
            return "raw GDAL virtual file paths are never opened"
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme in ("", "file") or (len(scheme) == 1 and text[1:2] == ":"):
            if not self.local_files:
                return "local files are only read for a local provider (local_assets)"
            return None
        if scheme not in self.schemes:
            return f"scheme '{scheme}' is not one of {list(self.schemes)} (asset_schemes)"
        host = (parts.hostname or "").lower().rstrip(".")
        if not host or not any(host == h or (h.startswith("*.") and host.endswith(h[1:]))
                               for h in self.hosts):
            return f"host '{host}' is not one of {list(self.hosts)} (asset_hosts)"
        return None


def _is_local_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return True
    host = (parts.hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def asset_policies(providers: Mapping[str, Any]) -> dict[str, AssetPolicy]:
    """One :class:`AssetPolicy` per configured provider (``Settings.providers``)."""
    out: dict[str, AssetPolicy] = {}
    for name, provider in providers.items():
        local = _is_local_url(provider.url)
        local_files = provider.local_assets if provider.local_assets is not None else local
        schemes = (tuple(provider.asset_schemes) if provider.asset_schemes is not None
                   else ("https", "s3", "http") if local else ("https", "s3"))
        own = (urlsplit(provider.url).hostname or "").lower()
        hosts = (tuple(h.lower() for h in provider.asset_hosts)
                 if provider.asset_hosts is not None else ((own,) if own else ()))
        out[name] = AssetPolicy(schemes=schemes, hosts=hosts, local_files=local_files)
    return out


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

    def __init__(self, *, max_read_pixels: int = 60_000_000,
                 policies: Mapping[str, AssetPolicy] | None = None) -> None:
        """``policies``: provider name -> where its hrefs may point; a scene of a provider
        without one is refused. None (tests, the demo's own files): no restriction."""
        self.max_read_pixels = max_read_pixels
        self.policies = dict(policies) if policies is not None else None

    def check_href(self, scene: SceneData, band: str, href: str) -> None:
        if self.policies is None:
            return
        policy = self.policies.get(scene.provider)
        problem = ("the provider is not configured" if policy is None
                   else policy.problem(href))
        if problem:
            raise SceneReadError(
                scene.item_id, f"asset {band} of provider '{scene.provider}' is refused: "
                f"{problem}", "the item points outside what the provider is configured "
                "for; the scene was dead-lettered (widen providers.<name>.asset_hosts if "
                "the host is legitimate)")

    def read_band(self, scene: SceneData, band: str, grid: CityGrid,
                  resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """One asset on the grid: (values float32 with NaN outside/no-data, inside-footprint mask)."""
        asset = scene.assets.get(band)
        if asset is None:
            raise SceneReadError(
                scene.item_id, f"has no '{band}' asset (assets: {sorted(scene.assets)})",
                "check the provider's asset mapping in the configuration")
        self.check_href(scene, band, asset.href)
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
