"""Demo-like results for the browser tests: a synthetic city (monitor.synthetic) whose
construction sites become alerts, a change state with their pixels, and the S2 surface
reflectance of the last day as the RGB reference, and a few real S2 scenes (GeoTIFFs of
the synthetic surface on their day) registered as processed, so the before/after chips
are read from real files through the real raster reader.

The state here is a small stand-in with the attributes the renderers read (the real
``CityState`` stores its S2 reference in an internal scaled format that a test should not
have to forge); the layers are drawn by the real ``monitor.reporting.maps`` functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, mapping

from monitor.domain.grid import CityGrid, reproject_geometry
from monitor.domain.rendering import iso_to_day
from monitor.synthetic.landscape import generate_landscape
from monitor.synthetic.sensors import surface_reflectance

CITY_ID = "testville"
CITY_NAME = "Testville"
START, END = date(2019, 1, 1), date(2021, 12, 31)
MODEL_VERSION = "siamese-s2-v1.2.0"
BASELINE_DAYS = 60


@dataclass
class DemoState:
    """The attributes of ``CityState`` that ``monitor.reporting.maps`` reads."""

    grid: CityGrid
    status: np.ndarray
    first_day: np.ndarray
    change_day: np.ndarray
    s2_count: np.ndarray
    s2: np.ndarray
    # stream -> first / last applied day, and the baseline length (as CityState has them)
    first_stream_day: dict[str, int] = field(default_factory=dict)
    last_day: dict[str, int] = field(default_factory=dict)
    params: Any = None
    version: int = 1
    # site id -> the state's observation log (monitor.domain.site_log entries)
    site_log: dict[int, list[list[Any]]] = field(default_factory=dict)

    def reference_for(self, modality: str, orbit: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        return (self.s2, self.s2_count >= 3) if modality == "s2" else None


@dataclass
class DemoCity:
    grid: CityGrid
    aoi: Any
    state: DemoState
    alerts: list[dict[str, Any]] = field(default_factory=list)  # AlertData-shaped dicts
    land: Any = None
    seed: int = 7

    def feature_collection(self) -> dict[str, Any]:
        features = []
        for a in self.alerts:
            props = {k: v for k, v in a.items() if k != "geometry"}
            features.append({"type": "Feature", "id": a["alert_id"], "geometry": a["geometry"],
                             "properties": props})
        return {"type": "FeatureCollection", "features": features}

    def stats(self) -> dict[str, Any]:
        """Shaped like monitor.domain.sdg: built-up series and one SDG 11.3.1 period."""
        baseline = 2_400_000.0
        per_day: dict[str, float] = {}
        for a in self.alerts:
            if a["status"] == "confirmed":
                per_day[a["confirmed"]] = per_day.get(a["confirmed"], 0.0) + a["area_m2"]
        series = [{"date": START.isoformat(), "added_m2": 0.0, "cumulative_added_m2": 0.0,
                   "built_up_m2": baseline}]
        total = 0.0
        for day in sorted(per_day):
            total += per_day[day]
            series.append({"date": day, "added_m2": per_day[day], "cumulative_added_m2": total,
                           "built_up_m2": baseline + total})
        lcr = float(np.log((baseline + total) / baseline) / 3.0)
        pgr = float(np.log(51000 / 48000) / 3.0)
        return {"city_id": CITY_ID, "built_up": series,
                "sdg_11_3_1": {"t1": START.isoformat(), "t2": END.isoformat(), "years": 3.0,
                               "urb_t1_m2": baseline, "urb_t2_m2": baseline + total,
                               "pop_t1": 48000, "pop_t2": 51000,
                               "population_extrapolated": False, "lcr": lcr, "pgr": pgr,
                               "ratio": lcr / pgr,
                               "note": "land is consumed faster than the population grows"}}


def build_demo_city(seed: int = 7, n_sites: int = 8) -> DemoCity:
    aoi = box(11.50, 48.10, 11.54, 48.127)  # about 3 x 3 km
    grid = CityGrid.from_aoi(aoi)
    land = generate_landscape(grid, START, END, n_sites=n_sites, seed=seed)
    refl, _ = surface_reflectance(land, END, seed)
    h, w = grid.shape
    status = np.zeros((h, w), np.uint8)
    first_day = np.zeros((h, w), np.uint16)
    change_day = np.zeros((h, w), np.uint16)
    statuses = ["confirmed", "confirmed", "provisional", "first", "retracted"]
    codes = {"first": 1, "provisional": 2, "confirmed": 3, "retracted": 4}
    alerts: list[dict[str, Any]] = []
    site_log: dict[int, list[list[Any]]] = {}
    for k, site in enumerate(sorted(land.sites, key=lambda s: s.start)):
        st = statuses[k % len(statuses)]
        pixels = land.site_labels == site.site_id
        change = site.start
        first = change + timedelta(days=12)
        confirmed = first + timedelta(days=35) if st in ("confirmed", "retracted") else None
        retracted = first + timedelta(days=120) if st == "retracted" else None
        status[pixels] = codes[st]
        first_day[pixels] = iso_to_day(first)
        change_day[pixels] = iso_to_day(change)
        polygon = reproject_geometry(site.polygon_utm, grid.epsg, 4326)
        alerts.append(alert_data(
            alert_id=f"alert-{k:03d}", status=st, geometry=mapping(polygon),
            area_m2=float(site.n_pixels * 100.0), first_detected=first, confirmed=confirmed,
            retracted=retracted, change_date=change, confidence=0.55 + 0.05 * (k % 8),
            site_id=str(k + 1)))
        # what the S2 scenes (scene_days) said about the site from its first detection on:
        # p(change) high, evidence rising; every second scene mostly cloudy over it
        entries = []
        for j, day in enumerate(d for d in scene_days() if first <= d <= first + timedelta(days=240)):
            seen = site.n_pixels // 4 if j % 2 == 1 else site.n_pixels
            entries.append([iso_to_day(day), "s2", site.n_pixels, seen, round(0.7 + 0.02 * j, 3),
                            round(2.0 + 1.5 * j, 2), st])
        site_log[k + 1] = entries
    state = DemoState(grid=grid, status=status, first_day=first_day, change_day=change_day,
                      s2_count=np.full((h, w), 5, np.uint8), s2=refl.astype(np.float32),
                      first_stream_day={"s2": iso_to_day(START)},
                      last_day={"s2": iso_to_day(END)},
                      params=SimpleNamespace(baseline_days=BASELINE_DAYS), site_log=site_log)
    return DemoCity(grid=grid, aoi=aoi, state=state, alerts=alerts, land=land, seed=seed)


def scene_days() -> list[date]:
    """The days of the demo city's real S2 scenes: every 45 days from START + 5."""
    days, day = [], START + timedelta(days=5)
    while day <= END:
        days.append(day)
        day += timedelta(days=45)
    return days


def write_scenes(city: DemoCity, folder: Path, days: list[date]) -> list[Any]:
    """S2 scenes of the synthetic surface on ``days``: one GeoTIFF per band (DN =
    reflectance x 10000, SCL 4 = clear) on the city grid, as SceneData."""
    import rasterio
    from affine import Affine

    from monitor.domain.events import Asset, SceneData
    from monitor.synthetic.sensors import surface_reflectance

    grid = city.grid
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1,
               "crs": grid.crs, "transform": Affine(*grid.transform), "nodata": 0}
    bands = ("blue", "green", "red", "nir", "swir16", "swir22")
    scenes = []
    for day in days:
        refl, _ = surface_reflectance(city.land, day, city.seed)
        item_id = f"S2B_MSIL2A_{day:%Y%m%d}T101029_R022_T32UPU"
        assets = {}
        for k, band in enumerate(bands):
            path = folder / f"{item_id}_{band}.tif"
            dn = np.clip(refl[k] * 10000, 1, 65535).astype(np.uint16)
            with rasterio.open(path, "w", dtype="uint16", **profile) as dst:
                dst.write(dn, 1)
            assets[band] = Asset(href=str(path), key=band)
        scl = folder / f"{item_id}_scl.tif"
        with rasterio.open(scl, "w", dtype="uint8", **profile) as dst:
            dst.write(np.full(grid.shape, 4, np.uint8), 1)
        assets["scl"] = Asset(href=str(scl), key="scl")
        west, south, east, north = city.aoi.bounds
        scenes.append(SceneData(
            city_id=CITY_ID, provider="synthetic", stac_api="http://stac.invalid/",
            collection="sentinel-2-l2a", item_id=item_id, modality="s2",
            acquired=datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10),
            bbox=[west, south, east, north], assets=assets, cloud_cover=3.0))
    return scenes


def register_scenes(db: Any, scenes: list[Any]) -> None:
    """Record ``scenes`` in the scene registry as processed (what the worker leaves)."""
    from monitor.domain.events import scene_event

    for data in scenes:
        event = scene_event(data)
        db.register_scene(event.id, city_id=data.city_id, source="s2-test",
                          provider=data.provider, collection=data.collection,
                          item_id=data.item_id, modality=data.modality, acquired=data.acquired,
                          event_json=event.to_json().decode("utf-8"))
        db.mark_scene(event.id, "processed")


def alert_data(*, alert_id: str, status: str, geometry: dict[str, Any], area_m2: float,
               first_detected: date, confirmed: date | None = None,
               retracted: date | None = None, change_date: date | None = None,
               confidence: float = 0.8, revision: int = 1,
               site_id: str | None = None) -> dict[str, Any]:
    """An AlertData-shaped dict (ISO dates), as in the items endpoint and the SSE stream."""
    return {
        "alert_id": alert_id, "city_id": CITY_ID, "status": status, "revision": revision,
        "geometry": geometry, "area_m2": area_m2, "first_detected": first_detected.isoformat(),
        "confirmed": confirmed.isoformat() if confirmed else None,
        "retracted": retracted.isoformat() if retracted else None,
        "change_date": change_date.isoformat() if change_date else None,
        "confidence": round(confidence, 3), "model_version": MODEL_VERSION,
        "scene_ids": [f"S2B_MSIL2A_{first_detected:%Y%m%d}T101029_R022_T32UPU",
                      f"S1A_IW_GRDH_{first_detected:%Y%m%d}T052321_VV"],
        "site_id": site_id,
    }


def new_site_alert(city: DemoCity, alert_id: str = "alert-live") -> dict[str, Any]:
    """A fresh alert in the middle of the city (for the live-update test)."""
    centre = reproject_geometry(city.aoi.centroid, 4326, city.grid.epsg)
    square = reproject_geometry(shapely.box(centre.x - 40, centre.y - 40, centre.x + 40,
                                            centre.y + 40), city.grid.epsg, 4326)
    day = END - timedelta(days=3)
    return alert_data(alert_id=alert_id, status="first", geometry=mapping(square),
                      area_m2=6400.0, first_detected=day, change_date=day - timedelta(days=10),
                      confidence=0.42)


def alert_record(data: dict[str, Any]) -> Any:
    """The AlertData dict as the repository's StoredAlert."""
    from monitor.domain.records import StoredAlert

    as_date = lambda v: date.fromisoformat(v) if v else None  # noqa: E731
    return StoredAlert(
        id=data["alert_id"], city_id=data["city_id"], status=data["status"],
        revision=data["revision"], geometry=data["geometry"], area_m2=data["area_m2"],
        first_detected=as_date(data["first_detected"]), confirmed=as_date(data["confirmed"]),
        retracted=as_date(data["retracted"]), change_date=as_date(data["change_date"]),
        confidence=data["confidence"], model_version=data["model_version"],
        scene_ids=data["scene_ids"], site_id=data.get("site_id"),
        created_at=datetime.now(UTC), updated_at=datetime.now(UTC))
