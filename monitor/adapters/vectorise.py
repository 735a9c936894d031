"""Change sites of a city state -> ChangeSite reports (footprints as lon/lat polygons).

The inference worker calls :func:`site_reports` with the sites an update moved
(``UpdateResult.sites``, see ``monitor.domain.sites``). Only each site's own window (its
bounding box) is traced: the cost is what the scene changed, never the whole grid.
Footprints (a confirmed site's confirmed pixels, else its active pixels) are traced with
``rasterio.features.shapes`` in the grid CRS (pixel-exact edges, 8-connected), then
reprojected to EPSG:4326 as the event contract asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from rasterio.features import shapes
from rasterio.transform import Affine
from shapely.geometry import mapping, shape

from monitor.domain.events import ChangeSite
from monitor.domain.grid import CityGrid
from monitor.domain.sites import SiteSummary, site_footprint
from monitor.domain.vocabulary import day_to_date
from monitor.errors import AlertError


@lru_cache(maxsize=16)
def _to_wgs84(epsg: int) -> Any:
    return Transformer.from_crs(epsg, 4326, always_xy=True).transform


def footprint_polygon(mask: np.ndarray, grid: CityGrid, row0: int, col0: int) -> Any:
    """The (Multi)Polygon (lon/lat) of the True pixels of ``mask``, a window of the grid
    whose top-left pixel is (row0, col0); None when the mask is empty."""
    if not mask.any():
        return None
    x0 = grid.origin_x + col0 * grid.pixel_size
    y0 = grid.origin_y - row0 * grid.pixel_size
    transform = Affine(grid.pixel_size, 0.0, x0, 0.0, -grid.pixel_size, y0)
    parts = [shape(geom) for geom, value in
             shapes(mask.astype(np.uint8), mask=mask, transform=transform, connectivity=8)
             if value]
    utm = shapely.union_all(parts)
    return shapely.make_valid(shapely.transform(utm, _to_wgs84(grid.epsg), interleaved=False))


def site_reports(state: Any, sites: Sequence[SiteSummary]) -> list[ChangeSite]:
    """The ChangeSite of each summary (geometry traced from the state's arrays now)."""
    status = state.status
    labels = state.to_arrays()["site"]
    grid: CityGrid = state.grid
    if status.shape != grid.shape:
        raise AlertError(f"state status has shape {status.shape}, the grid is {grid.shape}",
                         "pass a state of the city's grid")
    px_area = grid.pixel_size ** 2
    out = []
    for s in sites:
        geometry = None
        if s.n_pixels > 0 and s.status not in ("retracted", "withdrawn"):
            r0, c0, _, _ = s.bbox
            geometry = footprint_polygon(site_footprint(status, labels, s), grid, r0, c0)
        bbox = [round(v, 7) for v in geometry.bounds] if geometry is not None else None
        out.append(ChangeSite(
            site_id=str(s.site_id), status=s.status,  # type: ignore[arg-type]
            geometry=dict(mapping(geometry)) if geometry is not None else None, bbox=bbox,
            n_pixels=int(s.n_pixels), area_m2=round(float(s.n_pixels) * px_area, 2),
            first_detected=day_to_date(s.first_day),
            confirmed=day_to_date(s.confirm_day) if s.confirm_day else None,
            closed=day_to_date(s.closed_day) if s.closed_day else None,
            change_date=day_to_date(s.change_day) if s.change_day else None,
            confidence=float(min(max(s.confidence, 0.0), 1.0))))
    return out


def scored_alerts(alerts: Sequence[Any], grid: CityGrid,
                  scene_days: Mapping[str, Any] | None = None) -> list[Any]:
    """The last revision of every alert (AlertData/StoredAlert-like: alert_id or id,
    status, revision, geometry, change_date, confirmed, first_detected) burnt onto ``grid``
    as :class:`monitor.domain.alert_scoring.ScoredAlert` (``ever_provisional`` from any
    revision given). With ``scene_days`` (scene id -> acquisition date), the warning day is
    the latest acquisition among the scene ids of the first provisional-or-confirmed
    revision: the day of the scene that made the alert a warning."""
    from datetime import date as _date
    from datetime import datetime as _datetime

    from rasterio.features import rasterize

    from monitor.domain.alert_scoring import WARNING_STATUSES, ScoredAlert
    from monitor.domain.grid import reproject_geometry
    from monitor.domain.vocabulary import UNIX_DAY_OFFSET, date_to_day

    def key(a: Any) -> str:
        return str(getattr(a, "alert_id", None) or a.id)

    def day(d: Any) -> int | None:
        if d is None:
            return None
        value = d.date() if isinstance(d, _datetime) else d
        assert isinstance(value, _date)
        return date_to_day(value) + UNIX_DAY_OFFSET

    transform = Affine(*grid.transform)
    last: dict[str, Any] = {}
    provisional: set[str] = set()
    warned: dict[str, Any] = {}   # first provisional-or-confirmed revision
    for a in alerts:
        if a.status in WARNING_STATUSES:
            provisional.add(key(a))
            if key(a) not in warned or a.revision < warned[key(a)].revision:
                warned[key(a)] = a
        if key(a) not in last or a.revision >= last[key(a)].revision:
            last[key(a)] = a
    out = []
    for k, a in last.items():
        geom = reproject_geometry(shape(a.geometry), 4326, grid.epsg)
        mask = rasterize([(geom, 1)], out_shape=grid.shape, transform=transform, fill=0,
                         dtype="uint8").astype(bool)
        warning_day = None
        if scene_days is not None and k in warned:
            known = [scene_days[i] for i in getattr(warned[k], "scene_ids", None) or []
                     if i in scene_days]
            warning_day = day(max(known)) if known else None
        out.append(ScoredAlert(alert_id=k, status=a.status, mask=mask,
                               change_day=day(a.change_date), confirmed_day=day(a.confirmed),
                               first_day=day(a.first_detected),
                               ever_provisional=k in provisional, warning_day=warning_day))
    return out
