"""From STAC items to scenes: pure mapping, validation and assignment to cities.

A STAC item (a plain dict, as the API returned it) becomes a :class:`SceneData` for one
city: canonical band names from the provider's asset keys, the S2 bottom-of-atmosphere
offset, orbit and polarisation metadata. Items that cannot become scenes raise
:class:`ItemError` naming the item; items that are valid but not wanted (too cloudy, wrong
radar mode) are *filtered*, which is a different outcome and says why.

No IO here: shapely only. The adapters fetch the dicts, the pipeline decides what to do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import shapely
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from monitor.domain.events import Asset, SceneData
from monitor.errors import ItemError

Modality = Literal["s1", "s2"]

# ESA processing baseline 04.00 (from 25 January 2022) adds 1000 to every L2A reflectance
# DN so that negative surface reflectance survives; products of that baseline or newer
# need it subtracted before dividing by 10000, unless the provider already removed it.
BOA_OFFSET_DN = 1000.0
BOA_OFFSET_BASELINE = (4, 0)
BOA_OFFSET_SINCE = datetime(2022, 1, 25, tzinfo=UTC)

REQUIRED_BANDS: dict[str, frozenset[str]] = {
    "s2": frozenset({"red", "nir", "scl"}),
    "s1": frozenset({"vv"}),
}

_BASELINE_IN_URI = re.compile(r"_N(\d{2})(\d{2})_")


def parse_datetime(value: Any) -> datetime | None:
    """An RFC 3339 string (``Z`` or offset, or the space-separated form some APIs use) as
    an aware UTC datetime; None if absent or unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # STAC datetimes are UTC
    return parsed.astimezone(UTC)


def item_id_of(item: Mapping[str, Any]) -> str:
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ItemError("<no id>", "the item has no 'id'")
    return item_id


def item_datetime(item: Mapping[str, Any]) -> datetime:
    """Acquisition time: ``datetime``, or ``start_datetime`` when ``datetime`` is null."""
    props = item.get("properties")
    if not isinstance(props, Mapping):
        raise ItemError(item_id_of(item), "the item has no 'properties'")
    acquired = parse_datetime(props.get("datetime")) or parse_datetime(props.get("start_datetime"))
    if acquired is None:
        raise ItemError(item_id_of(item), "no usable 'datetime' (nor 'start_datetime') property")
    return acquired


def item_geometry(item: Mapping[str, Any]) -> BaseGeometry:
    """The footprint in lon/lat. Slightly invalid rings are repaired (real footprints often
    have tiny self-intersections); missing, empty or non-areal geometries are errors."""
    item_id = item_id_of(item)
    raw = item.get("geometry")
    if not isinstance(raw, Mapping):
        raise ItemError(item_id, "no 'geometry' (a footprint is needed to match cities)")
    try:
        geom = shape(raw)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise ItemError(item_id, f"geometry is not valid GeoJSON ({exc})") from None
    if geom.is_empty:
        raise ItemError(item_id, "geometry is empty")
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type == "GeometryCollection":
        geom = unary_union([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ItemError(item_id, f"geometry is a {raw.get('type')!r} without area")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0):
        raise ItemError(item_id, f"geometry bounds {list(geom.bounds)} are not lon/lat degrees")
    return geom


def processing_baseline(props: Mapping[str, Any]) -> str | None:
    """``s2:processing_baseline``, or the ``_Nxxyy_`` part of ``s2:product_uri``."""
    baseline = props.get("s2:processing_baseline")
    if isinstance(baseline, str) and baseline:
        return baseline
    uri = props.get("s2:product_uri")
    if isinstance(uri, str):
        match = _BASELINE_IN_URI.search(uri)
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return None


def _baseline_tuple(baseline: str) -> tuple[int, int] | None:
    parts = baseline.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def boa_offset(props: Mapping[str, Any], baseline: str | None, acquired: datetime) -> float:
    """DN to subtract before dividing by 10000 (0 or 1000).

    Baseline >= 04.00 carries the offset, unless the provider says it already removed it
    (Earth Search ``sentinel-2-l2a``: ``earthsearch:boa_offset_applied: true``). Without a
    baseline, the acquisition date decides (04.00 became operational on 2022-01-25).
    """
    if props.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    version = _baseline_tuple(baseline) if baseline else None
    if version is not None:
        return BOA_OFFSET_DN if version >= BOA_OFFSET_BASELINE else 0.0
    return BOA_OFFSET_DN if acquired >= BOA_OFFSET_SINCE else 0.0


def backscatter_unit(collection: str) -> Literal["gamma0_linear", "dn"]:
    """RTC collections hold terrain-corrected gamma0 (linear power); GRD holds detected DN."""
    return "gamma0_linear" if "rtc" in collection.lower() else "dn"


def _epsg(props: Mapping[str, Any]) -> int | None:
    epsg = props.get("proj:epsg")
    if isinstance(epsg, int) and not isinstance(epsg, bool):
        return epsg
    code = props.get("proj:code")  # projection extension v2
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        try:
            return int(code.split(":", 1)[1])
        except ValueError:
            return None
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def filter_reason(item: Mapping[str, Any], *, modality: Modality,
                  max_cloud_cover: float | None = None, instrument_mode: str | None = "IW",
                  polarizations: Sequence[str] = ()) -> str | None:
    """Why a well-formed item is not wanted by a source, or None if it is wanted.

    Applied client-side always: many STAC servers ignore or lack the query extension,
    so a server-side prefilter is an optimisation, never the guarantee.
    """
    props = item.get("properties") or {}
    if modality == "s2" and max_cloud_cover is not None:
        cloud = _float(props.get("eo:cloud_cover"))
        if cloud is not None and cloud > max_cloud_cover:
            return f"cloud cover {cloud:.1f} % > {max_cloud_cover:g} %"
    if modality == "s1":
        mode = props.get("sar:instrument_mode")
        if instrument_mode and isinstance(mode, str) and mode.upper() != instrument_mode.upper():
            return f"instrument mode {mode} is not {instrument_mode}"
        present = props.get("sar:polarizations")
        if polarizations and isinstance(present, list):
            have = {str(p).upper() for p in present}
            missing = [p for p in polarizations if p.upper() not in have]
            if missing:
                return f"polarisations {sorted(have)} lack {missing}"
    return None


def scene_from_item(item: Mapping[str, Any], *, city_id: str, provider: str, stac_api: str,
                    collection: str, modality: Modality, asset_keys: Mapping[str, str],
                    polarizations: Sequence[str] = ()) -> SceneData:
    """Map one STAC item onto a scene for ``city_id``. Raises :class:`ItemError`.

    ``asset_keys`` maps canonical band names to the provider's asset keys (from settings).
    Required bands must be present; optional mapped bands are carried when present.
    """
    item_id = item_id_of(item)
    props = item.get("properties")
    if not isinstance(props, Mapping):
        raise ItemError(item_id, "the item has no 'properties'")
    acquired = item_datetime(item)
    geom = item_geometry(item)
    raw_assets = item.get("assets")
    if not isinstance(raw_assets, Mapping) or not raw_assets:
        raise ItemError(item_id, "the item has no 'assets'")

    assets: dict[str, Asset] = {}
    for band, key in asset_keys.items():
        raw = raw_assets.get(key)
        if isinstance(raw, Mapping) and isinstance(raw.get("href"), str) and raw["href"]:
            media_type = raw.get("type")
            assets[band] = Asset(href=raw["href"], key=key,
                                 type=media_type if isinstance(media_type, str) else None)
    missing = sorted(b for b in REQUIRED_BANDS[modality] if b not in assets)
    if missing:
        keys = [asset_keys.get(b, b) for b in missing]
        raise ItemError(item_id, f"missing required asset(s) {keys} (canonical {missing})",
                        "check the asset mapping of this collection in the settings; "
                        "the item was skipped and recorded")

    bbox = item.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) in (4, 6)
            and all(_float(v) is not None for v in bbox)):
        bbox = list(geom.bounds)
    elif len(bbox) == 6:  # 3-D bbox: drop the heights
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]

    platform = props.get("platform")
    orbit = props.get("sat:orbit_state")
    orbit_state = orbit.lower() if isinstance(orbit, str) and orbit.lower() in (
        "ascending", "descending") else None
    rel_orbit = props.get("sat:relative_orbit")
    published = parse_datetime(props.get("published")) or parse_datetime(props.get("created"))

    scene: dict[str, Any] = dict(
        city_id=city_id, provider=provider, stac_api=stac_api, collection=collection,
        item_id=item_id, modality=modality, acquired=acquired, published=published,
        bbox=[float(v) for v in bbox], epsg=_epsg(props), assets=assets,
        platform=platform.lower() if isinstance(platform, str) else None,
        orbit_state=orbit_state,
        relative_orbit=rel_orbit if isinstance(rel_orbit, int) and not isinstance(
            rel_orbit, bool) else None,
    )
    if modality == "s2":
        baseline = processing_baseline(props)
        scene.update(cloud_cover=_float(props.get("eo:cloud_cover")),
                     processing_baseline=baseline,
                     boa_offset=boa_offset(props, baseline, acquired))
    else:
        mode = props.get("sar:instrument_mode")
        pols = props.get("sar:polarizations")
        have = [str(p).upper() for p in pols] if isinstance(pols, list) else [
            b.upper() for b in assets]
        scene.update(instrument_mode=mode if isinstance(mode, str) else None,
                     polarizations=have, backscatter_unit=backscatter_unit(collection))
    return SceneData(**scene)


# -- windows and cities -------------------------------------------------------------------

def search_window(last_acquired: datetime | None, now: datetime,
                  lookback: timedelta) -> tuple[datetime, datetime]:
    """From (newest acquisition seen - lookback) to now; first poll: (now - lookback, now).

    The lookback catches items that a provider lists late, with an acquisition time older
    than what we have already seen. Re-seen items are de-duplicated by the registry.
    """
    now = _aware(now)
    if last_acquired is None:
        return now - lookback, now
    start = min(_aware(last_acquired), now) - lookback
    return start, now


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class CityArea:
    """A city's id and area of interest (lon/lat), for matching items."""

    id: str
    aoi: BaseGeometry


class CityIndex:
    """A spatial index over many cities' AOIs (built once per search batch)."""

    def __init__(self, cities: Sequence[CityArea]) -> None:
        self.cities = list(cities)
        self._tree = shapely.STRtree([c.aoi for c in self.cities])

    def hits(self, geometry: BaseGeometry) -> list[str]:
        found = self._tree.query(geometry, predicate="intersects")
        return [self.cities[i].id for i in sorted(int(h) for h in found)]

    def near_bbox(self, bbox: Sequence[float]) -> list[str]:
        found = self._tree.query(box(*bbox[:4]), predicate="intersects")
        return [self.cities[i].id for i in sorted(int(h) for h in found)]


def group_cities(cities: Sequence[CityArea], *, max_per_group: int = 50,
                 cell_degrees: float = 10.0) -> list[list[CityArea]]:
    """Batch nearby cities so one search (their union) serves many cities.

    Cities are ordered along a serpentine path over coarse lon/lat cells of their centroids
    (so consecutive cities are near each other and a batch's union stays compact), then cut
    into groups of at most ``max_per_group`` (a bounded request size). The search area is
    the union of the members' envelopes, so a spread-out batch costs a larger request body,
    never unrelated items.
    """
    def order(city: CityArea) -> tuple[int, float, str]:
        c = city.aoi.centroid
        row = int((c.y + 90.0) // cell_degrees)
        # Alternate direction per row: the path never jumps back across the map.
        return row, c.x if row % 2 == 0 else -c.x, city.id

    ordered = sorted(cities, key=order)
    return [ordered[i:i + max_per_group] for i in range(0, len(ordered), max_per_group)]


def search_area(cities: Iterable[CityArea]) -> dict[str, Any]:
    """One GeoJSON geometry covering the cities (union of their AOI envelopes).

    Envelopes keep the request small; the exact AOI test happens client-side afterwards.
    """
    union = unary_union([box(*c.aoi.bounds) for c in cities])
    return dict(mapping(union))


def sort_key(item: Mapping[str, Any]) -> tuple[datetime, str]:
    """Acquisition order, id as tie-break (items without a datetime sort first)."""
    props = item.get("properties") or {}
    acquired = (parse_datetime(props.get("datetime")) or parse_datetime(
        props.get("start_datetime")) or datetime.min.replace(tzinfo=UTC))
    return acquired, str(item.get("id", ""))
