"""Change layers as Cloud-Optimized GeoTIFFs beside the city states (local folder or any
fsspec URL), with their STAC items.

Layout, per city (under the products URL, by default the state store's)::

    <url>/<city_id>/layers/v00000042/status.tif ...   one COG per layer (LAYERS)
    <url>/<city_id>/layers/v00000042/item.json        its STAC item (relative asset hrefs)
    <url>/<city_id>/layers/LATEST.json                the last published {version, day}

COGs are written with GDAL's COG driver: 256 px tiles, DEFLATE with the horizontal
predictor, overviews down to one tile (nearest for dates, mode for the status, average for
confidence and counts), in the city grid's CRS. A layer set is written file by file under
temporary names, then moved into place; ``item.json`` is written last, so a reader that
lists items never sees a half-written set. The newest ``keep`` sets are kept per city.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import rasterio
import rasterio.shutil
from fsspec.core import url_to_fs
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from monitor.domain.grid import CityGrid
from monitor.domain.vocabulary import date_to_day
from monitor.errors import ProductError
from monitor.products.layers import LAYERS, LayerSet, LayerSpec, PublishedMark
from monitor.products.stac import AssetFile, layer_item

log = logging.getLogger(__name__)

ITEM_FILE = "item.json"
MARK_FILE = "LATEST.json"
_VERSION_DIR = re.compile(r"^v(\d{8})$")
_SAFE_CITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
COG_BLOCKSIZE = 256


def encode_cog(array: np.ndarray, grid: CityGrid, spec: LayerSpec,
               tags: dict[str, str] | None = None) -> bytes:
    """One layer as COG bytes (GDAL's COG driver)."""
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
        "dtype": spec.dtype, "crs": f"EPSG:{grid.epsg}", "transform": Affine(*grid.transform)}
    if spec.nodata is not None:
        profile["nodata"] = spec.nodata
    with MemoryFile() as source_file:
        with source_file.open(**profile) as source:
            source.write(array.astype(spec.dtype, copy=False), 1)
            source.set_band_description(1, spec.name)
            band_tags = {"title": spec.title}
            if spec.unit:
                band_tags["units"] = spec.unit
            if spec.classes:
                band_tags["classes"] = ",".join(f"{c.value}={c.name}" for c in spec.classes)
            source.update_tags(1, **band_tags)
            source.update_tags(**(tags or {}))
        with source_file.open() as source, MemoryFile() as target:
            rasterio.shutil.copy(source, target.name, driver="COG", COMPRESS="DEFLATE",
                                 PREDICTOR="2", BLOCKSIZE=str(COG_BLOCKSIZE),
                                 OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=spec.resampling,
                                 RESAMPLING="NEAREST", NUM_THREADS="1")
            return bytes(target.read())


def multihash_sha256(data: bytes) -> str:
    """The file extension's checksum: a sha2-256 multihash (``1220`` + hex digest)."""
    return "1220" + hashlib.sha256(data).hexdigest()


class LayerStore:
    """Writes, lists and reads the change layers of every city.

    ``url``: a local folder or any fsspec URL; ``keep``: layer sets kept per city.
    """

    def __init__(self, url: str, keep: int = 10,
                 filesystem: fsspec.AbstractFileSystem | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1 layer set")
        if filesystem is None:
            filesystem, root = url_to_fs(url)
        else:
            root = filesystem._strip_protocol(url)
        self.fs: fsspec.AbstractFileSystem = filesystem
        self.root = str(root).rstrip("/")
        self.url = url
        self.keep = keep

    # ---------------------------------------------------------------- paths
    def _layers_dir(self, city_id: str) -> str:
        if not _SAFE_CITY_ID.match(city_id):
            raise ProductError(city_id, "the city id cannot name a folder",
                               "use letters, digits, '-', '_' or '.' in city ids")
        return f"{self.root}/{city_id}/layers"

    def _set_dir(self, city_id: str, version: int) -> str:
        return f"{self._layers_dir(city_id)}/v{version:08d}"

    def asset_path(self, city_id: str, version: int, layer: str) -> str:
        if layer not in {s.name for s in LAYERS}:
            raise ProductError(city_id, f"'{layer}' is not a layer",
                               f"use one of {[s.name for s in LAYERS]}")
        return f"{self._set_dir(city_id, version)}/{layer}.tif"

    # ---------------------------------------------------------------- writing
    def _put(self, path: str, data: bytes) -> None:
        tmp = f"{path.rsplit('/', 1)[0]}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, path)
        except BaseException:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:
                log.warning("could not remove temporary file %s", tmp)
            raise

    def write(self, layers: LayerSet) -> dict[str, Any]:
        """Write the COGs and the STAC item of ``layers``; returns the item (a dict)."""
        city_id, version = layers.city_id, layers.version
        directory = self._set_dir(city_id, version)
        files: dict[str, AssetFile] = {}
        tags = {"city_id": city_id, "state_version": str(version),
                "last_scene_id": layers.last_scene_id or ""}
        try:
            self.fs.makedirs(directory, exist_ok=True)
            for spec in LAYERS:
                data = encode_cog(layers.arrays[spec.name], layers.grid, spec, tags)
                self._put(f"{directory}/{spec.name}.tif", data)
                files[spec.name] = AssetFile(f"./{spec.name}.tif", len(data),
                                             multihash_sha256(data))
            item = layer_item(layers, files).to_dict(include_self_link=False,
                                                     transform_hrefs=False)
            self._put(f"{directory}/{ITEM_FILE}", json.dumps(item).encode())
            mark = PublishedMark(version, _day_of(layers))
            self._put(f"{self._layers_dir(city_id)}/{MARK_FILE}",
                      json.dumps(mark.to_json()).encode())
        except (OSError, RasterioError, ValueError) as exc:
            raise ProductError(city_id, f"could not write the change layers of version "
                               f"{version} to {self.url}: {exc}",
                               "check the storage; publish again with `urban-monitor "
                               "products publish`") from exc
        self._prune(city_id)
        return item

    def _prune(self, city_id: str) -> None:
        for old in self.versions(city_id)[:-self.keep]:
            try:
                self.fs.rm(self._set_dir(city_id, old), recursive=True)
            except OSError as exc:  # a leftover old set is harmless
                log.warning("could not remove old layers v%s of %s: %s", old, city_id, exc)

    # ---------------------------------------------------------------- reading
    def last_published(self, city_id: str) -> PublishedMark | None:
        path = f"{self._layers_dir(city_id)}/{MARK_FILE}"
        try:
            with self.fs.open(path, "rb") as f:
                return PublishedMark.from_json(json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("unreadable layer mark %s (%s): treated as nothing published", path, exc)
            return None

    def cities(self) -> list[str]:
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if _SAFE_CITY_ID.match(name) and self.fs.exists(f"{self.root}/{name}/layers"):
                out.append(name)
        return sorted(out)

    def versions(self, city_id: str) -> list[int]:
        """Published layer sets of the city (with their item written), oldest first."""
        try:
            entries = self.fs.ls(self._layers_dir(city_id), detail=False)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            m = _VERSION_DIR.match(str(entry).rstrip("/").rsplit("/", 1)[-1])
            if m and self.fs.exists(f"{self._set_dir(city_id, int(m.group(1)))}/{ITEM_FILE}"):
                found.append(int(m.group(1)))
        return sorted(found)

    def item(self, city_id: str, version: int) -> dict[str, Any] | None:
        """The stored STAC item (relative asset hrefs), or None."""
        path = f"{self._set_dir(city_id, version)}/{ITEM_FILE}"
        try:
            with self.fs.open(path, "rb") as f:
                data: dict[str, Any] = json.loads(f.read())
                return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProductError(city_id, f"the STAC item {path} is unreadable: {exc}",
                               "publish the layers again") from exc

    def items(self, city_id: str | None = None) -> Iterator[dict[str, Any]]:
        for city in [city_id] if city_id else self.cities():
            for version in self.versions(city):
                item = self.item(city, version)
                if item is not None:
                    yield item

    def size(self, city_id: str, version: int, layer: str) -> int:
        return int(self.fs.size(self.asset_path(city_id, version, layer)))

    def read_range(self, city_id: str, version: int, layer: str, start: int,
                   length: int) -> bytes:
        """``length`` bytes of a COG from ``start`` (HTTP range requests)."""
        with self.fs.open(self.asset_path(city_id, version, layer), "rb") as f:
            f.seek(start)
            data: bytes = f.read(length)
            return data

    def read_asset(self, city_id: str, version: int, layer: str) -> bytes:
        with self.fs.open(self.asset_path(city_id, version, layer), "rb") as f:
            data: bytes = f.read()
            return data


def _day_of(layers: LayerSet) -> int | None:
    return date_to_day(layers.end) if layers.end else None
