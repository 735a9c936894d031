"""Alerts: one per change site of a city state, revised when the site moves.

The inference worker's state groups changing pixels into *sites* with stable ids
(``monitor.domain.sites``) and sends, with every ChangeEvent v2, only the sites the scene
moved (:class:`~monitor.domain.events.ChangeSite`). An alert is a site as subscribers see
it; :func:`fold_site` turns one site report into the alert's next revision, purely:

* **ids cannot collide**: ``alert_id = hash(city, site id)`` and site ids are a per-city
  counter of the state (a new site never reuses an id), so a new site can never overwrite
  another site's alert; replaying the same stream rebuilds the same ids;
* **one revision per material change**: status, dates, footprint (beyond
  ``min_geometry_change_m2``) or confidence (by ``confidence_step``); a report that changes
  none of them makes no revision, so an alert row always equals its last AlertEvent;
* **lifecycle**: first -> provisional -> confirmed; **confirmed is final** (a report that
  would take a confirmed alert back is refused); a confirmed site whose confirmed pixels
  the state withdrew becomes ``withdrawn`` (its own terminal status); a site that never
  confirmed and faded becomes ``retracted`` and may reopen (same id) if it comes back;
* **dates**: first detection is the earliest seen; confirmation and the estimated time of
  change are the site's (the median of its pixels' change points, frozen once confirmed);
  ``retracted`` is the day the site closed;
* a retracted or withdrawn alert keeps its last footprint (where it was), the site report
  of a closed site has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from typing import Any, cast

import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from monitor.domain.events import ChangeSite, deterministic_id
from monitor.domain.grid import utm_epsg_for
from monitor.domain.vocabulary import ALERT_STATUSES, AlertStatus
from monitor.errors import AlertError

STATUSES = ALERT_STATUSES
# Lifecycle order of the open statuses; 'retracted' and 'withdrawn' are outside it.
STATUS_RANK = {"first": 1, "provisional": 2, "confirmed": 3}
CLOSED = ("retracted", "withdrawn")


@dataclass(frozen=True)
class AlertRules:
    """The knobs of :func:`fold_site` (from ``Settings.alerting``)."""

    min_mapping_unit_m2: float = 1000.0
    confidence_step: float = 0.05
    min_geometry_change_m2: float = 1.0


@dataclass(frozen=True)
class Alert:
    """One site, as alerted. ``geometry`` is shapely, lon/lat (EPSG:4326)."""

    alert_id: str
    city_id: str
    status: str
    revision: int
    geometry: BaseGeometry
    area_m2: float
    first_detected: date
    confidence: float
    model_version: str
    scene_ids: tuple[str, ...] = ()
    confirmed: date | None = None
    retracted: date | None = None
    change_date: date | None = None
    site_id: str | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return self.status not in CLOSED

    def geometry_geojson(self) -> dict[str, Any]:
        return dict(mapping(self.geometry))


def alert_id_for(city_id: str, site_id: str) -> str:
    """Deterministic alert id of a site: the same city and site always give the same id."""
    return deterministic_id("alert", city_id, "site", site_id)


@lru_cache(maxsize=64)
def _transformer(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


def _metric(geom: BaseGeometry) -> BaseGeometry:
    centre = geom.centroid
    to_metric = _transformer(utm_epsg_for(centre.x, centre.y)).transform
    return shapely.transform(geom, to_metric, interleaved=False)


def site_geometry(site: ChangeSite) -> BaseGeometry | None:
    """The site's footprint as a valid shapely geometry (lon/lat), None when it has none."""
    if site.geometry is None:
        return None
    try:
        geom = shape(site.geometry)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise AlertError(f"site {site.site_id} has invalid GeoJSON: {exc}",
                         "fix the producer of the ChangeEvent (the inference worker)") from exc
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.geom_type == "GeometryCollection":  # make_valid can add slivers: keep the areas
        geom = shapely.union_all([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise AlertError(f"site {site.site_id} geometry is "
                         f"{'empty' if geom.is_empty else geom.geom_type}",
                         "sites must be Polygon or MultiPolygon in EPSG:4326")
    return geom


def _merge_ids(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(old) | set(new)))


def fold_site(existing: Alert | None, site: ChangeSite, *, city_id: str, model_version: str,
              scene_ids: Sequence[str], rules: AlertRules | None = None) -> Alert | None:
    """The alert's next revision for one site report, or None when nothing material moved
    (or a site too small or already closed appears for the first time)."""
    rules = rules or AlertRules()
    geometry = site_geometry(site)
    status = site.status
    if existing is None:
        if status in CLOSED or geometry is None:
            return None  # never announced: nothing to take back
        if site.area_m2 < rules.min_mapping_unit_m2:
            return None
        return Alert(
            alert_id=alert_id_for(city_id, site.site_id), city_id=city_id, status=status,
            revision=1, geometry=geometry, area_m2=round(site.area_m2, 2),
            first_detected=site.first_detected,
            confirmed=site.confirmed if status == "confirmed" else None,
            change_date=site.change_date, confidence=round(site.confidence, 4),
            model_version=model_version, scene_ids=_merge_ids((), scene_ids),
            site_id=site.site_id)
    if existing.status in ("confirmed", "withdrawn") and status not in ("confirmed", "withdrawn"):
        status = cast(AlertStatus, existing.status)  # confirmed is final: never back to first/provisional/retracted
    if existing.status == "withdrawn":
        status = "withdrawn"
    new_geometry = geometry if geometry is not None else existing.geometry
    geometry_changed = False
    if geometry is not None:
        diff = shapely.symmetric_difference(_metric(existing.geometry), _metric(geometry)).area
        geometry_changed = diff > rules.min_geometry_change_m2
    first_detected = min(existing.first_detected, site.first_detected)
    confirmed = existing.confirmed
    if status == "confirmed" and confirmed is None:
        confirmed = site.confirmed or site.first_detected
    change_date = existing.change_date
    if existing.status != "confirmed" or change_date is None:
        change_date = site.change_date or change_date
    retracted = (existing.retracted or site.closed) if status in CLOSED else None
    confidence = existing.confidence
    if abs(site.confidence - confidence) >= rules.confidence_step:
        confidence = round(site.confidence, 4)
    area = round(site.area_m2, 2) if geometry_changed else existing.area_m2
    material = (geometry_changed or status != existing.status
                or first_detected != existing.first_detected or confirmed != existing.confirmed
                or retracted != existing.retracted or change_date != existing.change_date
                or confidence != existing.confidence)
    if not material:
        return None
    return replace(
        existing, status=status, revision=existing.revision + 1,
        geometry=new_geometry if geometry_changed else existing.geometry, area_m2=area,
        first_detected=first_detected, confirmed=confirmed, retracted=retracted,
        change_date=change_date, confidence=confidence, model_version=model_version,
        scene_ids=_merge_ids(existing.scene_ids, scene_ids), site_id=site.site_id)
