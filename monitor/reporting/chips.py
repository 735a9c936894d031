"""Before/after chips of an alert: true-colour PNGs of the S2 scenes just before the
alert's estimated change date and just after its confirmation (else first detection),
over the alert's bounding box plus a margin, with the alert's outline drawn on top; and
the observation timeline around it (the city's processed scenes, those that moved the
alert marked). Analysts verify an alert with them.

The scenes are read through the scene-reader port (``monitor.adapters.raster``: the
assets' COG windows warped onto a small chip grid in the city's UTM zone), so only the
blocks under the chip are read. Both chips share one stretch, so a colour change between
them is a change on the ground, not in the stretch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np
from affine import Affine
from rasterio import features as rio_features
from shapely.geometry import shape

from monitor.domain.events import SceneData
from monitor.domain.grid import CityGrid, reproject_geometry
from monitor.domain.records import StoredAlert
from monitor.domain.rendering import composite_rgb
from monitor.errors import SceneReadError
from monitor.reporting.png import encode_png

CHIP_MARGIN_M = 120.0   # around the alert's bbox: enough context to see the neighbours
CHIP_MIN_SIDE_M = 400.0
CHIP_MAX_SIDE_M = 3000.0
CHIP_SCALE = 4          # 10 m pixels drawn 4x4 (nearest): an outline one screen pixel wide
MIN_CLEAR = 0.7         # a chip scene must see this share of the chip clear
MAX_TRIES = 8           # scenes tried per side before settling for the clearest one
OUTLINE_RGBA = (0, 229, 255, 255)
TIMELINE_BEFORE_DAYS = 120
TIMELINE_AFTER_DAYS = 90


class ChipReader(Protocol):
    def read_s2(self, scene: SceneData, grid: CityGrid, bands: Sequence[str] = ...) -> Any: ...


@dataclass
class ChipScene:
    scene: SceneData
    values: np.ndarray  # (3, H, W) red, green, blue reflectance
    valid: np.ndarray
    clear_fraction: float

    def describe(self) -> dict[str, Any]:
        return {"item_id": self.scene.item_id, "collection": self.scene.collection,
                "acquired": self.scene.acquired.date().isoformat(),
                "clear_fraction": round(self.clear_fraction, 3)}


def chip_grid(geometry: dict[str, Any]) -> CityGrid:
    """A grid over the alert's bbox plus :data:`CHIP_MARGIN_M`, at least
    :data:`CHIP_MIN_SIDE_M` a side (centred), in the alert's UTM zone, 10 m pixels."""
    geom = shape(geometry)
    base = CityGrid.from_aoi(geom)
    utm = reproject_geometry(geom, 4326, base.epsg)
    left, bottom, right, top = utm.bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    half_w = min(max((right - left) / 2 + CHIP_MARGIN_M, CHIP_MIN_SIDE_M / 2), CHIP_MAX_SIDE_M / 2)
    half_h = min(max((top - bottom) / 2 + CHIP_MARGIN_M, CHIP_MIN_SIDE_M / 2), CHIP_MAX_SIDE_M / 2)
    px = base.pixel_size
    x0 = math.floor((cx - half_w) / px) * px
    y1 = math.ceil((cy + half_h) / px) * px
    width = int(math.ceil((cx + half_w - x0) / px))
    height = int(math.ceil((y1 - (cy - half_h)) / px))
    return CityGrid(epsg=base.epsg, origin_x=x0, origin_y=y1, width=width, height=height,
                    pixel_size=px)


def read_chip(reader: ChipReader, scene: SceneData, grid: CityGrid) -> ChipScene:
    raster = reader.read_s2(scene, grid, bands=("red", "green", "blue"))
    valid = np.asarray(raster.valid, bool)
    return ChipScene(scene=scene, values=np.asarray(raster.values, np.float32), valid=valid,
                     clear_fraction=float(valid.mean()) if valid.size else 0.0)


def pick_clear(reader: ChipReader, candidates: Sequence[SceneData], grid: CityGrid
               ) -> ChipScene | None:
    """The first candidate that sees :data:`MIN_CLEAR` of the chip clear, else the
    clearest of the first :data:`MAX_TRIES`; unreadable scenes are passed over."""
    best: ChipScene | None = None
    for scene in list(candidates)[:MAX_TRIES]:
        try:
            chip = read_chip(reader, scene, grid)
        except SceneReadError:
            continue
        if chip.clear_fraction >= MIN_CLEAR:
            return chip
        if best is None or chip.clear_fraction > best.clear_fraction:
            best = chip
    return best if best is not None and best.clear_fraction > 0 else None


def chip_dates(alert: StoredAlert) -> tuple[date, date]:
    """(before: scenes strictly before this day, after: scenes on or after this day)."""
    change = alert.change_date or alert.first_detected
    after = alert.confirmed or alert.first_detected
    return change, max(after, change)


def choose_chip_scenes(alert: StoredAlert, scenes: Sequence[SceneData], reader: ChipReader,
                       grid: CityGrid, moved_by: Sequence[str] = ()
                       ) -> tuple[ChipScene | None, ChipScene | None]:
    """(before, after): the last clear S2 scene before the change date, and the scene that
    moved the alert to this revision (``moved_by``) — or, when that scene is radar or not
    clear over the chip, the nearest clear S2 scene before it (after the change), then
    after it. Without ``moved_by``: the first clear S2 scene from the confirmation (or
    first detection) on."""
    s2 = sorted((s for s in scenes if s.modality == "s2"), key=lambda s: s.acquired)
    before_day, after_day = chip_dates(alert)
    before = [s for s in reversed(s2) if s.acquired.date() < before_day]
    moving = [s for s in scenes if s.item_id in set(moved_by)]
    if moving:
        moved_at = max(s.acquired for s in moving)
        at_or_before = [s for s in reversed(s2)
                        if s.acquired <= moved_at and s.acquired.date() >= before_day]
        later = [s for s in s2 if s.acquired > moved_at]
        after = [*at_or_before, *later]
    else:
        after = [s for s in s2 if s.acquired.date() >= after_day]
    return pick_clear(reader, before, grid), pick_clear(reader, after, grid)


def _outline_mask(geometry: dict[str, Any], grid: CityGrid, scale: int) -> np.ndarray:
    utm = reproject_geometry(shape(geometry), 4326, grid.epsg)
    transform = Affine(grid.pixel_size / scale, 0, grid.origin_x,
                       0, -grid.pixel_size / scale, grid.origin_y)
    return rio_features.rasterize([(utm.boundary, 1)], out_shape=(grid.height * scale,
                                  grid.width * scale), transform=transform, fill=0,
                                  all_touched=True, dtype="uint8").astype(bool)


def render_chips(before: ChipScene | None, after: ChipScene | None, geometry: dict[str, Any],
                 grid: CityGrid, scale: int = CHIP_SCALE) -> tuple[bytes | None, bytes | None]:
    """PNG bytes of the before and after chips (None where there is no scene), one shared
    stretch, the alert's outline on both."""
    present = [c for c in (before, after) if c is not None]
    if not present:
        return None, None
    # One stretch for both: stretch them side by side, then cut the image in two.
    values = np.concatenate([c.values for c in present], axis=2)
    valid = np.concatenate([c.valid for c in present], axis=1)
    rgba = composite_rgb(values[0], values[1], values[2], valid=valid)
    outline = _outline_mask(geometry, grid, scale)
    out: list[bytes] = []
    for k in range(len(present)):
        part = rgba[:, k * grid.width:(k + 1) * grid.width]
        big = np.repeat(np.repeat(part, scale, axis=0), scale, axis=1)
        big[outline] = OUTLINE_RGBA
        out.append(encode_png(big))
    if before is None:
        return None, out[0]
    if after is None:
        return out[0], None
    return out[0], out[1]


def observation_timeline(alert: StoredAlert, scenes: Sequence[SceneData],
                         limit: int = 300, site_log: Sequence[dict[str, Any]] = ()
                         ) -> list[dict[str, Any]]:
    """The city's processed scenes from :data:`TIMELINE_BEFORE_DAYS` before the change
    date to :data:`TIMELINE_AFTER_DAYS` after the alert's last lifecycle date, oldest
    first; ``moved_alert`` marks the scenes the alert names (those that moved it).

    With the site's observation log (``monitor.domain.site_log.entries_as_dicts``), each
    scene the site saw carries what it said there: ``clear_share`` of the footprint seen,
    ``p_change`` (mean calibrated p(change), null when no model ran), ``evidence`` (mean
    CUSUM evidence after it) and ``site_status``; scenes before the site existed carry
    null (the log starts at the first detection)."""
    logged = {(e["date"], e["modality"]): e for e in site_log}
    change = alert.change_date or alert.first_detected
    last = max(d for d in (alert.first_detected, alert.confirmed, alert.retracted, change)
               if d is not None)
    lo, hi = change - timedelta(days=TIMELINE_BEFORE_DAYS), last + timedelta(days=TIMELINE_AFTER_DAYS)
    moved = set(alert.scene_ids)
    rows = []
    for s in sorted(scenes, key=lambda s: s.acquired):
        day = s.acquired.date()
        if lo <= day <= hi:
            entry = logged.get((day.isoformat(), s.modality), {})
            rows.append({"date": day.isoformat(), "modality": s.modality,
                         "item_id": s.item_id, "collection": s.collection,
                         "cloud_cover": s.cloud_cover, "moved_alert": s.item_id in moved,
                         "clear_share": entry.get("clear_share"),
                         "p_change": entry.get("p_change"), "evidence": entry.get("evidence"),
                         "site_status": entry.get("site_status")})
    return rows[-limit:]


def lifecycle_events(alert: StoredAlert) -> list[dict[str, str]]:
    events = [("change_date", "estimated change", alert.change_date),
              ("first_detected", "first detected", alert.first_detected),
              ("confirmed", "confirmed", alert.confirmed),
              ("retracted", "retracted", alert.retracted)]
    return [{"kind": k, "label": label, "date": d.isoformat()} for k, label, d in events if d]


def alert_evidence(alert: StoredAlert, scenes: Sequence[SceneData], reader: ChipReader,
                   moved_by: Sequence[str] = (), site_log: Sequence[dict[str, Any]] = ()
                   ) -> dict[str, Any]:
    """Chips (PNG bytes under ``png``), the scenes they show, the observation timeline and
    the lifecycle dates of one alert revision (JSON-ready apart from ``png``).
    ``moved_by``: the scenes that made this revision; ``site_log``: the site's
    observation log (see :func:`observation_timeline`)."""
    grid = chip_grid(alert.geometry)
    before, after = choose_chip_scenes(alert, scenes, reader, grid, moved_by)
    png_before, png_after = render_chips(before, after, alert.geometry, grid)
    return {"alert_id": alert.id, "revision": alert.revision, "status": alert.status,
            "moved_by": list(moved_by),
            "before": before.describe() if before else None,
            "after": after.describe() if after else None,
            "timeline": observation_timeline(alert, scenes, site_log=site_log),
            "events": lifecycle_events(alert),
            "png": {"before": png_before, "after": png_after}}


def evidence_for_report(evidence: dict[str, Any]) -> dict[str, Any]:
    """:func:`alert_evidence` for the self-contained report: chips as data: URIs under
    each side's ``png``, as the page reads them from the API."""
    from monitor.reporting.report import png_data_uri

    out = {k: v for k, v in evidence.items() if k != "png"}
    for side in ("before", "after"):
        if out.get(side) is not None:
            out[side] = {**out[side], "png": png_data_uri(evidence["png"][side])}
    return out
