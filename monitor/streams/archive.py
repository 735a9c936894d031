"""Write (or reuse) the scene stream of one labelled city as a STAC-servable archive.

Layout under ``<out>/<city>/`` (the synthetic archives' layout, so the same STAC server
and pipeline serve both)::

    manifest.json                         parameters, hash, grid, AOI, dates, counts
    collections/{sentinel-2-l2a,sentinel-1-rtc}.json
    items/<collection>.json               all items of a collection (FeatureCollection)
    assets/<collection>/<item id>/<band>.tif   one COG per asset
    truth/change_date.tif                 int32 days since 1970-01-01 of the site's change
    truth/site_labels.tif                 int32 site id (8-connected label components)
    truth/inside.tif                      uint8 1 where the real images cover the grid
    truth/sites.geojson                   site polygons (lon/lat) with their dates

S2 items are Earth Search v1 shaped (asset keys blue ... swir22, rededge1-3, nir08, scl;
uint16 x 10000, 20 m bands at 20 m); S1 items are Planetary Computer ``sentinel-1-rtc``
shaped (VV only: the real S1 of these cities is VV).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from rasterio import features as rio_features
from rasterio.transform import Affine
from shapely.geometry import mapping, shape

from monitor.domain.grid import CityGrid
from monitor.domain.scoring import ChangeTruth
from monitor.errors import StreamError
from monitor.streams.oscd import BAND_KEYS, OscdCity, load_oscd_city
from monitor.streams.simulate import (
    BAND_20M,
    S1_NODATA,
    S1Plan,
    S2Plan,
    Sites,
    StreamParams,
    draw_sites,
    plan_s1,
    plan_s2,
    render_s1,
    render_s2,
    s1_mean_at,
    stream_period,
    surface_at,
    to_epoch_days,
)
from monitor.synthetic.raster_files import keep_float_precision, write_cog
from monitor.synthetic.sensors import S1Acquisition, S2Acquisition, solar_position
from monitor.synthetic.stac_items import (
    COG_TYPE,
    S1_COLLECTION,
    S2_COLLECTION,
    build_s1_collection,
    build_s1_item,
    build_s2_collection,
    build_s2_item,
    s1_item_id,
    s2_item_id,
)

log = logging.getLogger(__name__)

STREAM_GENERATOR_VERSION = "1"
MANIFEST = "manifest.json"
_OWNED = ("collections", "items", "assets", "truth", MANIFEST)
# The six bands the synthetic item builder writes, and the extra L2A bands added here.
_EXTRA_ASSETS = {
    "rededge1": ("B05", "Red Edge 1 (band 5) - 20m", 0.704, 0.019),
    "rededge2": ("B06", "Red Edge 2 (band 6) - 20m", 0.74, 0.018),
    "rededge3": ("B07", "Red Edge 3 (band 7) - 20m", 0.783, 0.028),
    "nir08": ("B8A", "NIR 2 (band 8A) - 20m", 0.865, 0.033),
}


@dataclass(frozen=True)
class StreamArchive:
    """A written stream: where everything is, and what it was built from."""

    root: Path
    city: str
    grid: CityGrid
    aoi: shapely.Polygon
    date_1: date
    date_2: date
    start: date
    end: date
    collection_paths: dict[str, Path]
    item_collection_paths: dict[str, Path]
    manifest: dict[str, Any]

    @property
    def truth_dir(self) -> Path:
        return self.root / "truth"

    def period_days(self) -> tuple[int, int]:
        """(first, last) day of the stream, days since 1970-01-01."""
        return to_epoch_days(self.start), to_epoch_days(self.end)

    def _read(self, name: str) -> np.ndarray:
        import rasterio

        with rasterio.open(self.truth_dir / name) as src:
            return src.read(1)

    def change_truth(self) -> ChangeTruth:
        return ChangeTruth(change_date=self._read("change_date.tif"),
                           site_labels=self._read("site_labels.tif"))

    def inside(self) -> np.ndarray:
        return self._read("inside.tif") > 0

    def sites(self) -> list[dict[str, Any]]:
        return list(json.loads((self.truth_dir / "sites.geojson").read_text())["features"])

    def items(self, collection: str | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for cid, path in self.item_collection_paths.items():
            if collection is None or cid == collection:
                out.extend(json.loads(path.read_text())["features"])
        return sorted(out, key=lambda it: it["properties"]["datetime"])


def _param_hash(data_root: Path, city: str, s1_root: Path | None, params: StreamParams) -> str:
    source = []
    for folder in (data_root / city, s1_root):
        if folder is None or not Path(folder).is_dir():
            continue
        pattern = "**/*.tif" if folder == data_root / city else f"sentinel1_{city}_*.tif"
        for p in sorted(Path(folder).glob(pattern)):
            source.append(f"{p.name}:{p.stat().st_size}")
    blob = json.dumps({"v": STREAM_GENERATOR_VERSION, "city": city, "params": params.to_dict(),
                       "source": source}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=2)
def _city(data_root: str, city: str, s1_root: str | None) -> OscdCity:
    return load_oscd_city(data_root, city, s1_root)


@lru_cache(maxsize=2)
def _sites(data_root: str, city: str, s1_root: str | None, params: StreamParams) -> Sites:
    c = _city(data_root, city, s1_root)
    return draw_sites(c.change, c.date_1, c.date_2, params)


def _lat_lon(c: OscdCity) -> tuple[float, float]:
    centroid = c.aoi.centroid
    return float(centroid.y), float(centroid.x)


def _s2_acquisition(plan: S2Plan, orbit: int, lat: float) -> S2Acquisition:
    el, az = solar_position(plan.time.date(), lat, 10.5)
    return S2Acquisition(
        index=plan.index, platform=plan.platform, time=plan.time, relative_orbit=orbit,
        cloud_fraction=plan.cloud_fraction, latency=plan.latency, sun_elevation=round(el, 4),
        sun_azimuth=round(az, 4), boa_offset=False, processing_baseline="02.09")


def _render_s2_chunk(data_root: str, city: str, s1_root: str | None, params: StreamParams,
                     root: str, archive_hash: str, plans: list[S2Plan]) -> list[dict[str, Any]]:
    c = _city(data_root, city, s1_root)
    sites = _sites(data_root, city, s1_root, params)
    grid = c.grid
    lat, _ = _lat_lon(c)
    orbit = 1 + int(archive_hash[:4], 16) % 143
    items = []
    for plan in plans:
        acq = _s2_acquisition(plan, orbit, lat)
        surface = surface_at(c.s2_1, c.s2_2, sites, plan.time.date(), c.date_1, c.date_2)
        scene = render_s2(np.nan_to_num(surface), c.inside, plan, params.seed,
                          sun_azimuth=acq.sun_azimuth, sun_elevation=acq.sun_elevation)
        item_dir = Path(root) / "assets" / S2_COLLECTION / s2_item_id(acq, grid, lat)
        hrefs = {}
        for b, key in enumerate(BAND_KEYS):
            res = 20 if BAND_20M[b] else 10
            data = scene.dn_20m[b] if BAND_20M[b] else scene.dn_10m[b]
            path = item_dir / f"{key}.tif"
            write_cog(path, data, (res, 0, grid.origin_x, 0, -res, grid.origin_y), grid.epsg,
                      nodata=0)
            hrefs[key] = str(path.resolve())
        scl_path = item_dir / "SCL.tif"
        write_cog(scl_path, scene.scl, (20, 0, grid.origin_x, 0, -20, grid.origin_y), grid.epsg,
                  nodata=0)
        hrefs["scl"] = str(scl_path.resolve())
        item = build_s2_item(acq, grid, lat, hrefs, scene.percentages, archive_hash)
        _add_extra_assets(item, grid, hrefs)
        item["properties"]["processing:software"] = {"urban-monitor-streams": STREAM_GENERATOR_VERSION}
        item["properties"]["streams:city"] = city
        items.append(item)
    return items


def _add_extra_assets(item: dict[str, Any], grid: CityGrid, hrefs: dict[str, str]) -> None:
    h, w = grid.shape
    for key, (_, title, wl, fwhm) in _EXTRA_ASSETS.items():
        item["assets"][key] = {
            "href": hrefs[key], "type": COG_TYPE, "title": title,
            "eo:bands": [{"name": key, "common_name": key, "description": title.split(" - ")[0],
                          "center_wavelength": wl, "full_width_half_max": fwhm}],
            "gsd": 20, "proj:shape": [(h + 1) // 2, (w + 1) // 2],
            "proj:transform": [20, 0.0, grid.origin_x, 0.0, -20, grid.origin_y],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                              "spatial_resolution": 20, "scale": 0.0001, "offset": 0.0}],
            "roles": ["data", "reflectance"],
        }


def _s1_acquisition(plan: S1Plan) -> S1Acquisition:
    absolute = 1000 + plan.index * 7 + plan.orbit
    return S1Acquisition(
        index=plan.index, platform=plan.platform, time=plan.time, orbit_state=plan.orbit_state,
        relative_orbit=plan.orbit, absolute_orbit=absolute, incidence_deg=38.0,
        look_azimuth_deg=80.0 if plan.orbit_state == "ascending" else 280.0,
        nodata_side=None, nodata_fraction=0.0, latency=plan.latency)


def _render_s1_chunk(data_root: str, city: str, s1_root: str | None, params: StreamParams,
                     root: str, archive_hash: str, plans: list[S1Plan]) -> list[dict[str, Any]]:
    c = _city(data_root, city, s1_root)
    sites = _sites(data_root, city, s1_root, params)
    grid = c.grid
    items = []
    for plan in plans:
        mean_1, mean_2 = c.s1[plan.orbit]
        mean = s1_mean_at(mean_1, mean_2, sites, plan.time.date(), c.date_1, c.date_2)
        vv = render_s1(mean, plan, params.seed)
        acq = _s1_acquisition(plan)
        item_dir = Path(root) / "assets" / S1_COLLECTION / s1_item_id(acq)
        path = item_dir / "vv.tif"
        write_cog(path, keep_float_precision(np.where(np.isnan(vv), S1_NODATA, vv)),
                  grid.transform, grid.epsg, nodata=S1_NODATA)
        item = build_s1_item(acq, grid, {"vv": str(path.resolve()), "vh": ""}, archive_hash)
        del item["assets"]["vh"]
        item["properties"]["sar:polarizations"] = ["VV"]
        item["properties"]["streams:city"] = city
        items.append(item)
    return items


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _site_features(c: OscdCity, sites: Sites) -> list[dict[str, Any]]:
    grid = c.grid
    to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform
    transform = Affine(*grid.transform)
    polys: dict[int, list[Any]] = {}
    for geom, value in rio_features.shapes(sites.labels, mask=sites.labels > 0,
                                           transform=transform, connectivity=8):
        polys.setdefault(int(value), []).append(shape(geom))
    counts = np.bincount(sites.labels.ravel(), minlength=sites.n_sites + 1)
    features = []
    for site_id, parts in sorted(polys.items()):
        utm = shapely.union_all(parts)
        day = date(1970, 1, 1) + timedelta(days=int(sites.change_day[site_id]))
        features.append({
            "type": "Feature", "id": site_id,
            "geometry": mapping(shapely.transform(utm, to_wgs84, interleaved=False)),
            "properties": {"site_id": site_id, "change_date": day.isoformat(),
                           "n_pixels": int(counts[site_id]),
                           "area_ha": round(float(counts[site_id]) * grid.pixel_size ** 2 / 1e4, 4)},
        })
    return features


def build_stream(data_root: Path | str, city: str, out_dir: Path | str, *,
                 s1_root: Path | str | None = None, params: StreamParams | None = None,
                 workers: int | None = None, progress: bool = True) -> StreamArchive:
    """Build the stream of ``city`` under ``out_dir/<city>`` (or reuse it when built with
    the same data and parameters)."""
    params = params or StreamParams()
    data_root = Path(data_root).resolve()
    s1 = Path(s1_root).resolve() if s1_root is not None else None
    root = (Path(out_dir) / city).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_locked(data_root, city, s1, root, params, workers, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_locked(data_root: Path, city: str, s1_root: Path | None, root: Path,
                  params: StreamParams, workers: int | None, progress: bool) -> StreamArchive:
    from tqdm import tqdm

    archive_hash = _param_hash(data_root, city, s1_root, params)
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            existing = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = {}
        if existing.get("param_hash") == archive_hash and existing.get("complete"):
            return load_stream(root)
    for name in _OWNED:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    t0 = time.perf_counter()
    s1_arg = str(s1_root) if s1_root is not None else None
    c = _city(str(data_root), city, s1_arg)
    sites = _sites(str(data_root), city, s1_arg, params)
    grid = c.grid
    lat, lon = _lat_lon(c)
    truth = root / "truth"
    write_cog(truth / "change_date.tif", sites.change_date_raster(), grid.transform, grid.epsg)
    write_cog(truth / "site_labels.tif", sites.labels, grid.transform, grid.epsg)
    write_cog(truth / "inside.tif", c.inside.astype(np.uint8), grid.transform, grid.epsg)
    _write_json(truth / "sites.geojson",
                {"type": "FeatureCollection", "features": _site_features(c, sites)})

    s2_plans = plan_s2(c.date_1, c.date_2, lon, params)
    s1_plans = plan_s1(list(c.s1), c.date_1, c.date_2, lon, params)
    jobs: list[tuple[Any, list[Any]]] = []
    jobs += [(_render_s2_chunk, s2_plans[i:i + 8]) for i in range(0, len(s2_plans), 8)]
    jobs += [(_render_s1_chunk, s1_plans[i:i + 16]) for i in range(0, len(s1_plans), 16)]
    results: dict[str, list[dict[str, Any]]] = {S2_COLLECTION: [], S1_COLLECTION: []}
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    bar = tqdm(total=len(s2_plans) + len(s1_plans), unit="scene", disable=not progress,
               desc=f"stream {city}")
    args: tuple[Any, ...] = (str(data_root), city, s1_arg, params, str(root), archive_hash)
    try:
        if n_workers <= 1:
            for fn, chunk in jobs:
                items = fn(*args, chunk)
                results[items[0]["collection"]].extend(items)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                futures = [(pool.submit(fn, *(*args, chunk)), len(chunk)) for fn, chunk in jobs]
                for fut, n in futures:
                    items = fut.result()
                    results[items[0]["collection"]].extend(items)
                    bar.update(n)
    finally:
        bar.close()

    start, end = stream_period(c.date_1, c.date_2, params)
    bbox = [round(v, 9) for v in grid.footprint_wgs84().bounds]
    t_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    t_end = datetime(end.year, end.month, end.day, 23, 59, 59, tzinfo=UTC)
    collections = {S2_COLLECTION: build_s2_collection(bbox, t_start, t_end)}
    if s1_plans:
        collections[S1_COLLECTION] = build_s1_collection(bbox, t_start, t_end)
    rel: dict[str, Any] = {"collections": {}, "item_collections": {}}
    for cid, coll in collections.items():
        coll["title"] = coll["title"].replace("(synthetic)", f"(stream of real OSCD {city})")
        _write_json(root / "collections" / f"{cid}.json", coll)
        items = sorted(results[cid], key=lambda it: it["properties"]["datetime"])
        _write_json(root / "items" / f"{cid}.json", {"type": "FeatureCollection", "features": items})
        rel["collections"][cid] = f"collections/{cid}.json"
        rel["item_collections"][cid] = f"items/{cid}.json"
    site_sizes = np.bincount(sites.labels.ravel())[1:]
    manifest = {
        "generator": "urban-monitor streams", "generator_version": STREAM_GENERATOR_VERSION,
        "param_hash": archive_hash, "params": params.to_dict(), "city": city,
        "source": {"oscd": str(data_root / city), "oscd_s1": str(s1_root) if s1_root else None},
        "date_1": c.date_1.isoformat(), "date_2": c.date_2.isoformat(),
        "start": start.isoformat(), "end": end.isoformat(),
        "grid": grid.to_dict(), "aoi": mapping(c.aoi), **rel,
        "s1_orbits": sorted(c.s1),
        "counts": {S2_COLLECTION: len(results[S2_COLLECTION]),
                   S1_COLLECTION: len(results[S1_COLLECTION]), "sites": int(sites.n_sites),
                   "sites_at_least_10_px": int((site_sizes >= 10).sum()),
                   "change_pixels": int((sites.labels > 0).sum()),
                   "inside_pixels": int(c.inside.sum())},
        "generation_seconds": round(time.perf_counter() - t0, 1),
        "generated_at": datetime.now(UTC).isoformat(), "complete": True,
    }
    _write_json(manifest_path, manifest)
    log.info("built the stream of %s in %s (%.0f s)", city, root, time.perf_counter() - t0)
    return load_stream(root)


def load_stream(root: Path | str) -> StreamArchive:
    """Open a stream that ``build_stream`` completed."""
    base = Path(root).resolve()
    try:
        manifest = json.loads((base / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise StreamError(f"no stream at {base} ({MANIFEST} is missing)",
                          "build it: urban-monitor evaluate streams --build-only ...") from exc
    except json.JSONDecodeError as exc:
        raise StreamError(f"{base / MANIFEST} is not valid JSON: {exc}", "build it again") from exc
    if not manifest.get("complete") or manifest.get("generator") != "urban-monitor streams":
        raise StreamError(f"{base} is not a complete stream archive", "build it again")
    g = manifest["grid"]
    grid = CityGrid(epsg=int(g["epsg"]), origin_x=float(g["origin_x"]),
                    origin_y=float(g["origin_y"]), width=int(g["width"]),
                    height=int(g["height"]), pixel_size=float(g["pixel_size"]))
    return StreamArchive(
        root=base, city=manifest["city"], grid=grid, aoi=shape(manifest["aoi"]),
        date_1=date.fromisoformat(manifest["date_1"]),
        date_2=date.fromisoformat(manifest["date_2"]),
        start=date.fromisoformat(manifest["start"]), end=date.fromisoformat(manifest["end"]),
        collection_paths={k: base / v for k, v in manifest["collections"].items()},
        item_collection_paths={k: base / v for k, v in manifest["item_collections"].items()},
        manifest=manifest)
