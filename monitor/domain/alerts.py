"""Alert tracking: per-scene change regions become one alert per construction site.

An inference worker sends, with every ChangeEvent, the connected patches of the city's
change state (:class:`~monitor.domain.events.ChangeRegion`). Patches come and go, grow,
split and merge from scene to scene; subscribers want one stable alert per site, updated
as it grows. :func:`track_alerts` does that matching, purely (no IO):

1. Regions and the city's existing alerts are projected to the local UTM zone, so that
   distances and areas are metres.
2. A region and an alert (or two regions) belong to the same site when they overlap or lie
   within ``match_distance_m`` of each other; sites are the connected components of that
   relation (union-find).
3. A site without an alert becomes a new alert when its area reaches the minimum mapping
   unit (0.1 ha by default); its id is deterministic: a hash of the city and the anchor of
   its earliest region (so replaying the same events rebuilds the same ids).
4. A site with alerts updates the oldest active one (the "target"). If the site bridges
   several active alerts, the others are merged into the target: they are retracted
   (status ``retracted``), and their area now belongs to the target.

Update rules, chosen so that applying the same ChangeEvent twice is a no-op:
- geometry: union of the alert's geometry and its regions (construction is monotonic; a
  region that shrinks does not shrink the site, a retraction retracts it);
- status: the most advanced status of its regions; ``confirmed`` is sticky unless every
  region of the site is retracted; a retracted alert whose site is seen again reopens;
- dates: first detection, confirmation and time of change are the earliest seen (the
  site's change began then), retraction is the observation date;
- confidence: pixel-weighted mean confidence of the site's regions; while the site stays
  active it keeps the highest value reached (so replaying an older event is a no-op), on
  retraction or reopening it takes the event's value; it is updated only when it moved by
  ``confidence_step`` or more (a new scene that changes nothing else makes no revision);
- a revision is made only for a material change (status, dates, confidence step, geometry
  by more than ``min_geometry_change_m2``); its scene ids and model version then become the
  event's, added to the alert's list of scene ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from typing import Any

import shapely
from pyproj import Transformer
from shapely.errors import GEOSException
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union as _unary_union

from monitor.domain.events import ChangeRegion, deterministic_id
from monitor.domain.grid import utm_epsg_for
from monitor.domain.vocabulary import ALERT_STATUSES
from monitor.errors import AlertError

STATUSES = ALERT_STATUSES
# Lifecycle order of the active statuses; 'retracted' is outside it.
STATUS_RANK = {"first": 1, "provisional": 2, "confirmed": 3}


def _snap(geom: BaseGeometry) -> BaseGeometry:
    """Repair a geometry on a fine grid: 1 cm in metric CRSs, ~1 cm (1e-7 deg) in lon/lat."""
    grid = 0.01 if max(abs(v) for v in geom.bounds) > 1000 else 1e-7
    geom = shapely.make_valid(geom)
    try:
        return shapely.make_valid(shapely.set_precision(geom, grid))
    except GEOSException:
        return geom.buffer(0)


def robust(op: Any, *geoms: BaseGeometry) -> BaseGeometry:
    """``op(*geoms)``, retried on snapped and repaired inputs when GEOS reports a topology
    error (pixel-traced polygons reprojected between CRSs can meet at nearly-coincident
    vertices)."""
    try:
        return op(*geoms)
    except GEOSException:
        pass
    try:
        return op(*(_snap(g) for g in geoms))
    except GEOSException:
        return op(*(_snap(g).buffer(0) for g in geoms))


def unary_union(geoms: Any) -> BaseGeometry:
    parts = list(geoms)
    try:
        return _unary_union(parts)
    except GEOSException:
        return _unary_union([_snap(g) for g in parts])


@dataclass(frozen=True)
class AlertRules:
    """The knobs of :func:`track_alerts` (from ``Settings.alerting``)."""

    min_mapping_unit_m2: float = 1000.0
    match_distance_m: float = 20.0
    confidence_step: float = 0.05
    min_geometry_change_m2: float = 1.0


@dataclass(frozen=True)
class Alert:
    """One site, as tracked. ``geometry`` is shapely, lon/lat (EPSG:4326)."""

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
    merged_into: str | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return self.status != "retracted"

    def geometry_geojson(self) -> dict[str, Any]:
        return dict(mapping(self.geometry))


@dataclass(frozen=True)
class TrackResult:
    """What one ChangeEvent did: the changed alerts (new revision each) and why."""

    changed: list[Alert]
    reasons: dict[str, str]
    ignored_small: int = 0


def alert_id_for(city_id: str, anchor: str) -> str:
    """Deterministic alert id: the same city and anchor region always give the same id."""
    return deterministic_id("alert", city_id, anchor)


@lru_cache(maxsize=64)
def _transformer(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


def region_geometry(region: ChangeRegion) -> BaseGeometry:
    """A region's GeoJSON as a valid shapely geometry (lon/lat); AlertError if unusable."""
    try:
        geom = shape(region.geometry)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        raise AlertError(f"change region {region.region_id} has invalid GeoJSON: {exc}",
                         "fix the producer of the ChangeEvent (extract_regions)") from exc
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        raise AlertError(f"change region {region.region_id} geometry is "
                         f"{'empty' if geom.is_empty else geom.geom_type}",
                         "regions must be Polygon or MultiPolygon in EPSG:4326")
    if geom.geom_type == "GeometryCollection":  # make_valid can add slivers: keep the areas
        geom = unary_union([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    return geom


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _min_date(*values: date | None) -> date | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def track_alerts(existing: Sequence[Alert], regions: Sequence[ChangeRegion], *, city_id: str,
                 model_version: str, scene_ids: Sequence[str], observed: date,
                 rules: AlertRules | None = None) -> TrackResult:
    """Fold one ChangeEvent's regions into the city's alerts; returns only what changed.

    ``existing`` are the city's alerts (any status); ``observed`` is the acquisition date
    of the scene (used as the retraction date). Pure and deterministic.
    """
    rules = rules or AlertRules()
    if not regions:
        return TrackResult([], {})
    region_geoms = [region_geometry(r) for r in regions]
    centre = unary_union([g.envelope for g in region_geoms]).centroid
    to_metric = _transformer(utm_epsg_for(centre.x, centre.y)).transform

    def metric(geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, to_metric, interleaved=False)

    # Existing alerts near the regions only (envelope pre-filter in degrees, generous).
    reach_deg = rules.match_distance_m / 50_000.0 + 1e-6
    near_box = shapely.box(*unary_union(region_geoms).bounds).buffer(reach_deg)
    candidates = [a for a in existing if a.geometry.intersects(near_box)]
    # A retracted patch joins nothing but the alert it overlaps most (below), so one that
    # overlaps no alert would form a component of its own and be skipped: leave it out
    # now. Years of retracted speckle are most of a city's regions.
    retracted_idx = [i for i, r in enumerate(regions) if r.status == "retracted"]
    if retracted_idx:
        overlapping: set[int] = set()
        if candidates:
            tree = shapely.STRtree([a.geometry for a in candidates])
            # within ~0.1 m, not just intersecting: patches that share an edge in lon/lat
            # can overlap by a sliver once projected, and that sliver counts below.
            hits, _ = tree.query([region_geoms[i] for i in retracted_idx],
                                 predicate="dwithin", distance=1e-6)
            overlapping = {retracted_idx[k] for k in set(hits.tolist())}
        keep = [i for i, r in enumerate(regions) if r.status != "retracted" or i in overlapping]
        regions = [regions[i] for i in keep]
        region_geoms = [region_geoms[i] for i in keep]
        if not regions:
            return TrackResult([], {})
    nodes = [metric(g) for g in region_geoms] + [metric(a.geometry) for a in candidates]
    n_regions = len(regions)
    uf = _UnionFind(len(nodes))
    tree = shapely.STRtree(nodes)
    left, right = tree.query(nodes, predicate="dwithin", distance=rules.match_distance_m)
    retracted = [r.status == "retracted" for r in regions]
    best_alert: dict[int, tuple[float, int]] = {}  # retracted region -> (overlap, alert node)
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= n_regions and j >= n_regions:
            continue  # alerts never merge without a region between
        a, b = (i, j) if i < n_regions else (j, i)  # a is a region
        if b < n_regions and (retracted[a] or retracted[b]):
            continue  # a retracted patch never joins another patch
        if retracted[a]:
            # ...and speaks only for the one alert it overlaps most: old false-alarm
            # speckle lies everywhere and must not join two sites into one.
            overlap = robust(shapely.intersection, nodes[a], nodes[b]).area
            if overlap > 0 and overlap > best_alert.get(a, (0.0, -1))[0]:
                best_alert[a] = (overlap, b)
            continue
        uf.union(i, j)
    for a, (_, b) in best_alert.items():
        uf.union(a, b)
    components: dict[int, list[int]] = {}
    for i in range(len(nodes)):
        components.setdefault(uf.find(i), []).append(i)

    changed: list[Alert] = []
    reasons: dict[str, str] = {}
    ignored_small = 0
    scenes = tuple(scene_ids)
    for members in components.values():
        region_idx = [i for i in members if i < n_regions]
        if not region_idx:
            continue
        alert_list = [candidates[i - n_regions] for i in members if i >= n_regions]
        site_regions = [regions[i] for i in region_idx]
        site_geoms = [region_geoms[i] for i in region_idx]
        active = sorted((a for a in alert_list if a.active),
                        key=lambda a: (a.first_detected, a.alert_id))
        if not alert_list:
            if all(r.status == "retracted" for r in site_regions):
                continue  # nothing to announce: a patch that was never an alert
            if sum(r.area_m2 for r in site_regions) < rules.min_mapping_unit_m2:
                ignored_small += 1
                continue
            alert = _new_alert(city_id, site_regions, site_geoms, metric, model_version,
                               scenes)
            changed.append(alert)
            reasons[alert.alert_id] = "new"
            continue
        if active:
            target, absorbed = active[0], active[1:]
        else:  # only retracted alerts here: the oldest one reopens (or stays retracted)
            target = min(alert_list, key=lambda a: (a.first_detected, a.alert_id))
            absorbed = []
        updated = _update_alert(target, absorbed, site_regions, site_geoms, metric,
                                model_version, scenes, observed, rules)
        if updated is not None:
            changed.append(updated)
            reasons[updated.alert_id] = "merged" if absorbed else "updated"
        for other in absorbed:
            merged = replace(other, status="retracted", retracted=observed,
                             revision=other.revision + 1, model_version=model_version,
                             scene_ids=_merge_ids(other.scene_ids, scenes),
                             merged_into=target.alert_id)
            changed.append(merged)
            reasons[other.alert_id] = f"merged into {target.alert_id}"
    changed.sort(key=lambda a: a.alert_id)
    return TrackResult(changed, reasons, ignored_small)


def _merge_ids(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(old) | set(new)))


def _site_status(regions: Sequence[ChangeRegion]) -> str:
    active = [STATUS_RANK[r.status] for r in regions if r.status != "retracted"]
    if not active:
        return "retracted"
    best = max(active)
    return next(s for s, rank in STATUS_RANK.items() if rank == best)


def _weighted_confidence(regions: Sequence[ChangeRegion]) -> float:
    total = sum(r.n_pixels for r in regions)
    return float(sum(r.confidence * r.n_pixels for r in regions) / total)


def _new_alert(city_id: str, regions: Sequence[ChangeRegion], geoms: Sequence[BaseGeometry],
               metric: Any, model_version: str, scenes: tuple[str, ...]) -> Alert:
    anchor = min(regions, key=lambda r: (r.first_detected, r.region_id))
    geometry = unary_union(list(geoms))
    status = _site_status(regions)
    return Alert(
        alert_id=alert_id_for(city_id, anchor.region_id),
        city_id=city_id,
        status=status,
        revision=1,
        geometry=geometry,
        area_m2=float(metric(geometry).area),
        first_detected=min(r.first_detected for r in regions),
        confirmed=_min_date(*(r.confirmed for r in regions)) if status == "confirmed" else None,
        change_date=_min_date(*(r.change_date for r in regions)),
        confidence=round(_weighted_confidence(regions), 4),
        model_version=model_version,
        scene_ids=_merge_ids((), scenes),
    )


def _update_alert(target: Alert, absorbed: Sequence[Alert], regions: Sequence[ChangeRegion],
                  geoms: Sequence[BaseGeometry], metric: Any, model_version: str,
                  scenes: tuple[str, ...], observed: date, rules: AlertRules) -> Alert | None:
    # A retracted patch can retract a site but never extends its footprint.
    kept = [(g, r) for g, r in zip(geoms, regions, strict=True) if r.status != "retracted"]
    geoms = [g for g, _ in kept]
    if target.status == "confirmed":
        # A confirmed site's footprint grows only with confirmed pixels: its flickering
        # first/provisional fringe would otherwise make a new revision on every scene.
        geoms = [g for g, r in kept if r.status == "confirmed"]
    # The footprint is what the state shows now (its active or confirmed patches), not the
    # union of everything ever seen: that union only grew and, over years of flickering
    # first detections, swallowed whole districts. Redelivered events are dropped by id
    # before they get here (folded_change), so replacing is safe.
    geometry = unary_union(geoms) if geoms else target.geometry
    old_metric, new_metric = metric(target.geometry), metric(geometry)
    geometry_changed = (robust(shapely.symmetric_difference, old_metric, new_metric).area
                        > rules.min_geometry_change_m2)
    region_status = _site_status(regions)
    if region_status == "retracted":
        status = "retracted"
    else:
        ranks = [STATUS_RANK[region_status]]
        ranks += [STATUS_RANK[a.status] for a in (target, *absorbed) if a.active]
        status = next(s for s, rank in STATUS_RANK.items() if rank == max(ranks))
    everyone = (target, *absorbed)
    first_detected = min([a.first_detected for a in everyone] + [r.first_detected for r in regions])
    confirmed = None
    if status == "confirmed" or (status == "retracted" and target.confirmed):
        confirmed = _min_date(*(a.confirmed for a in everyone), *(r.confirmed for r in regions))
    retracted = (target.retracted or observed) if status == "retracted" else None
    change_date = _min_date(*(a.change_date for a in everyone), *(r.change_date for r in regions))
    confidence = target.confidence
    new_confidence = round(_weighted_confidence(regions), 4)
    if status != "retracted" and target.active:
        # While a site stays active its confidence is the highest it reached: a join,
        # like the union and the earliest dates, so a replayed older event changes nothing.
        new_confidence = max(new_confidence, confidence)
    if abs(new_confidence - confidence) >= rules.confidence_step:
        confidence = new_confidence
    material = (geometry_changed or status != target.status
                or first_detected != target.first_detected or confirmed != target.confirmed
                or retracted != target.retracted or change_date != target.change_date
                or confidence != target.confidence or bool(absorbed))
    if not material:
        return None
    return replace(
        target,
        status=status,
        revision=target.revision + 1,
        geometry=geometry if geometry_changed else target.geometry,
        area_m2=float(new_metric.area) if geometry_changed else target.area_m2,
        first_detected=first_detected,
        confirmed=confirmed,
        retracted=retracted,
        change_date=change_date,
        confidence=confidence,
        model_version=model_version,
        scene_ids=_merge_ids(target.scene_ids, scenes),
        merged_into=None,
    )
