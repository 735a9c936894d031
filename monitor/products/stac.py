"""STAC entries of the change layers: one collection per layer set, one item per city and
state version, with the projection, raster, file and classification extensions.

Pure (pystac objects built from :class:`monitor.products.layers.LayerSet`); asset hrefs
are given by the caller: relative (``./status.tif``) in the stored items and the static
catalog, absolute URLs in the API. odc-stac and stackstac load the layers from these
items: ``proj:code``/``proj:shape``/``proj:transform`` give the grid, ``raster:bands``
the data type, nodata and unit.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import pystac
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from monitor.domain.vocabulary import DAY_EPOCH
from monitor.products.layers import LAYER_SET, LAYERS, LayerSet, LayerSpec

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PROPERTY_PREFIX = "urban_monitor:"
# The layers derive from Copernicus Sentinel data through models whose weights are
# licensed CC BY-NC-SA 4.0 (their training labels' licence): the products say both.
PRODUCT_LICENSE = "other"
PRODUCT_ATTRIBUTION = (
    "Contains modified Copernicus Sentinel data, processed by Urban Monitor. Produced with "
    "change models whose weights are licensed CC BY-NC-SA 4.0 (trained on the OSCD labels; "
    "see the model cards); the software is Apache-2.0.")


@dataclass(frozen=True)
class AssetFile:
    """Where a layer's COG is and what it is: href, size in bytes, sha2-256 multihash."""

    href: str
    size: int
    checksum: str


def _instant(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _band(spec: LayerSpec, pixel_size: float) -> RasterBand:
    band = RasterBand.create(data_type=DataType(spec.dtype), spatial_resolution=pixel_size,
                             unit=spec.unit)
    if spec.nodata is not None:
        band.nodata = spec.nodata
    return band


def layer_item(layers: LayerSet, files: Mapping[str, AssetFile]) -> pystac.Item:
    """The STAC item of one layer set; ``files`` maps each layer name to its COG."""
    grid = layers.grid
    footprint = grid.footprint_wgs84()
    end = layers.end or layers.created.date()
    start = layers.start or end
    item = pystac.Item(
        id=layers.item_id, geometry=dict(mapping(footprint)), bbox=list(footprint.bounds),
        datetime=_instant(end), start_datetime=_instant(start),
        end_datetime=_instant(end), collection=LAYER_SET,
        properties={
            "title": f"Change layers of {layers.city_id}, state version {layers.version}",
            "created": layers.created.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            f"{PROPERTY_PREFIX}city_id": layers.city_id,
            f"{PROPERTY_PREFIX}state_version": layers.version,
            f"{PROPERTY_PREFIX}last_scene_id": layers.last_scene_id,
            f"{PROPERTY_PREFIX}model_version": layers.model_version,
            f"{PROPERTY_PREFIX}day_epoch": DAY_EPOCH.isoformat(),
            f"{PROPERTY_PREFIX}pixels": dict(layers.pixels),
        })
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(code=f"EPSG:{grid.epsg}", shape=[grid.height, grid.width],
               transform=list(grid.transform), bbox=list(grid.bounds))
    RasterExtension.add_to(item)
    FileExtension.add_to(item)
    ClassificationExtension.add_to(item)
    for spec in LAYERS:
        file = files[spec.name]
        asset = pystac.Asset(href=file.href, media_type=COG_MEDIA_TYPE, roles=["data"],
                             title=spec.title, description=spec.description)
        item.add_asset(spec.name, asset)
        RasterExtension.ext(asset).apply([_band(spec, grid.pixel_size)])
        FileExtension.ext(asset).apply(size=file.size, checksum=file.checksum)
        if spec.classes:
            ClassificationExtension.ext(asset).apply([
                Classification.create(value=c.value, name=c.name, description=c.description)
                for c in spec.classes])
    return item


def item_assets() -> dict[str, dict[str, Any]]:
    """The collection's ``item_assets``: what every item's asset of each layer is."""
    out: dict[str, dict[str, Any]] = {}
    for spec in LAYERS:
        entry: dict[str, Any] = {"type": COG_MEDIA_TYPE, "roles": ["data"],
                                 "title": spec.title, "description": spec.description,
                                 "raster:bands": [_band(spec, 10.0).to_dict()]}
        if spec.classes:
            entry["classification:classes"] = [
                {"value": c.value, "name": c.name, "description": c.description}
                for c in spec.classes]
        out[spec.name] = entry
    return out


def layer_collection(items: Iterable[Mapping[str, Any]]) -> pystac.Collection:
    """The collection of the change layers, its extent covering ``items`` (item dicts)."""
    items = list(items)
    footprints = [shape(i["geometry"]) for i in items if i.get("geometry")]
    bbox = (list(unary_union(footprints).bounds) if footprints
            else [-180.0, -90.0, 180.0, 90.0])
    starts = [i["properties"].get("start_datetime") or i["properties"]["datetime"]
              for i in items]
    ends = [i["properties"].get("end_datetime") or i["properties"]["datetime"] for i in items]
    interval: list[datetime | None] = [
        _parse(min(starts)) if starts else None, _parse(max(ends)) if ends else None]
    collection = pystac.Collection(
        id=LAYER_SET, title="Urban change layers",
        description=(
            "Per-pixel urban change layers of each monitored city, one item per city and "
            "published state version (OPERA DIST-ALERT-like): status (classification: "
            "none, first, provisional, confirmed, retracted, withdrawn), first-detection, "
            "confirmation and estimated change dates and the last clear observation "
            f"(uint16 days since {DAY_EPOCH.isoformat()}, 0 = none), confidence (0-100) and "
            "the clear-observation count, as Cloud-Optimized GeoTIFFs in the city grid's "
            "UTM CRS (10 m). " + PRODUCT_ATTRIBUTION),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([interval])),
        license=PRODUCT_LICENSE,
        keywords=["urban change", "Sentinel-1", "Sentinel-2", "change detection"],
        providers=[pystac.Provider(name="Urban Monitor", roles=[
            pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.PRODUCER]),
            pystac.Provider(name="ESA / Copernicus", roles=[pystac.ProviderRole.LICENSOR],
                            url="https://sentinels.copernicus.eu")],
        summaries=pystac.Summaries({
            f"{PROPERTY_PREFIX}city_id": sorted({i["properties"][f"{PROPERTY_PREFIX}city_id"]
                                                  for i in items})}),
    )
    collection.item_assets = {k: pystac.ItemAssetDefinition.create(
        title=v["title"], description=v["description"], media_type=v["type"],
        roles=v["roles"], extra_fields={k2: v2 for k2, v2 in v.items()
                                        if k2 not in ("title", "description", "type",
                                                      "roles")})
        for k, v in item_assets().items()}
    ProjectionExtension.add_to(collection)
    RasterExtension.add_to(collection)
    ClassificationExtension.add_to(collection)
    return collection


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_item_id(item_id: str) -> tuple[str, int] | None:
    """``lagos-v00000042`` -> ("lagos", 42); None for an id that is not a layer item."""
    m = _ITEM_ID.match(item_id)
    return (m.group(1), int(m.group(2))) if m else None


_ITEM_ID = re.compile(r"^(.+)-v(\d{8})$")


def with_asset_hrefs(item: Mapping[str, Any], href_for: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a stored item whose asset hrefs are ``href_for(layer name)``."""
    out = copy.deepcopy(dict(item))
    for key, asset in out.get("assets", {}).items():
        asset["href"] = href_for(key)
    return out


def item_interval(item: Mapping[str, Any]) -> tuple[date, date]:
    """The (first, last) acquisition day an item's layers cover."""
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return _parse(start).date(), _parse(end).date()
