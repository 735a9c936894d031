"""Generate (or reuse) a synthetic city archive on disk, and load one back.

Layout under ``out_dir``::

    manifest.json                          parameters, hash, grid, AOI, counts, units, paths
    collections/{sentinel-2-l2a,sentinel-1-rtc}.json
    items/<collection>.json                all items of a collection (FeatureCollection)
    items/<collection>/<item id>.json      one file per item (same content)
    assets/<collection>/<item id>/<band>.tif   one COG per asset
    truth/change_date.tif                  int32 days since 1970-01-01 of clearing, 0 = none
    truth/built_date.tif                   int32 days the pixel became built-up, 0 = never
    truth/site_labels.tif                  int32 construction site id, 0 = none
    truth/landcover.tif                    uint8 land cover at the start (see landscape.py)
    truth/sites.geojson                    site polygons (lon/lat) with their dates

Generating again with the same parameters into the same folder reuses it: the manifest
holds the parameter hash and is written last.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, mapping, shape
from tqdm import tqdm

from monitor.domain.grid import CityGrid
from monitor.domain.scoring import ChangeTruth
from monitor.errors import SyntheticArchiveError
from monitor.synthetic.landscape import (
    LANDCOVER_NAMES,
    Landscape,
    generate_landscape,
    to_epoch_days,
)
from monitor.synthetic.params import GENERATOR_VERSION, ArchiveParams
from monitor.synthetic.raster_files import keep_float_precision, write_cog
from monitor.synthetic.sensors import (
    S1_NODATA,
    plan_s1_acquisitions,
    plan_s2_acquisitions,
    simulate_s1,
    simulate_s2,
)
from monitor.synthetic.stac_items import (
    S1_COLLECTION,
    S1_UNIT,
    S2_ASSETS,
    S2_COLLECTION,
    build_s1_collection,
    build_s1_item,
    build_s2_collection,
    build_s2_item,
    s1_item_id,
    s2_item_id,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_OWNED = ("collections", "items", "assets", "truth", MANIFEST)


@dataclass(frozen=True)
class TruthPaths:
    change_date: Path
    built_date: Path
    site_labels: Path
    landcover: Path
    sites: Path


@dataclass(frozen=True)
class Archive:
    """A generated archive: where everything is, and what it was generated from."""

    root: Path
    params: ArchiveParams
    param_hash: str
    grid: CityGrid
    aoi: Polygon                              # lon/lat
    collection_paths: dict[str, Path]         # collection id -> collection JSON
    item_collection_paths: dict[str, Path]    # collection id -> FeatureCollection JSON
    item_paths: dict[str, list[Path]]         # collection id -> item JSONs, by datetime
    truth: TruthPaths
    manifest: dict[str, Any]

    @property
    def collections(self) -> list[str]:
        return list(self.collection_paths)

    def items(self, collection: str | None = None) -> list[dict[str, Any]]:
        """Item dicts of one collection (or all), sorted by datetime."""
        out: list[dict[str, Any]] = []
        for cid, path in self.item_collection_paths.items():
            if collection is None or cid == collection:
                out.extend(json.loads(path.read_text())["features"])
        return sorted(out, key=lambda it: it["properties"]["datetime"])

    def period_days(self) -> tuple[int, int]:
        """The archive's period as (first, last) days since 1970-01-01, for the scorer."""
        return to_epoch_days(self.params.start), to_epoch_days(self.params.end)

    def change_truth(self) -> ChangeTruth:
        """The truth rasters as the scorer takes them (read from truth/)."""
        import rasterio

        with rasterio.open(self.truth.change_date) as src:
            change_date = src.read(1)
        with rasterio.open(self.truth.site_labels) as src:
            site_labels = src.read(1)
        return ChangeTruth(change_date=change_date, site_labels=site_labels)

    def sites(self) -> list[dict[str, Any]]:
        """Ground-truth construction sites as GeoJSON features (lon/lat)."""
        return list(json.loads(self.truth.sites.read_text())["features"])


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


@lru_cache(maxsize=1)
def _landscape_for(params: ArchiveParams) -> Landscape:
    """The landscape is a pure function of the parameters: workers rebuild it (0.5 s)
    instead of receiving tens of megabytes of pickled arrays."""
    return generate_landscape(params.city_grid(), params.start, params.end,
                              params.resolved_n_sites(), params.seed,
                              params.wet_season_peak_doy)


def _render_s2(params: ArchiveParams, root: str, archive_hash: str,
               indices: list[int]) -> list[dict[str, Any]]:
    land = _landscape_for(params)
    grid = land.grid
    acqs = plan_s2_acquisitions(params)
    items = []
    for i in indices:
        acq = acqs[i]
        scene = simulate_s2(land, acq, params.seed)
        item_dir = Path(root) / "assets" / S2_COLLECTION / s2_item_id(acq, grid, params.lat)
        hrefs = {}
        for key, (band, *_rest, res) in S2_ASSETS.items():
            path = item_dir / f"{band}.tif"
            write_cog(path, scene.bands[band], (res, 0, grid.origin_x, 0, -res, grid.origin_y),
                      grid.epsg, nodata=0)
            hrefs[key] = str(path.resolve())
        scl_path = item_dir / "SCL.tif"
        write_cog(scl_path, scene.scl, (20, 0, grid.origin_x, 0, -20, grid.origin_y),
                  grid.epsg, nodata=0)
        hrefs["scl"] = str(scl_path.resolve())
        items.append(build_s2_item(acq, grid, params.lat, hrefs, scene.percentages,
                                   archive_hash))
    return items


def _render_s1(params: ArchiveParams, root: str, archive_hash: str,
               indices: list[int]) -> list[dict[str, Any]]:
    land = _landscape_for(params)
    grid = land.grid
    acqs = plan_s1_acquisitions(params)
    items = []
    for i in indices:
        acq = acqs[i]
        scene = simulate_s1(land, acq, params.seed)
        item_dir = Path(root) / "assets" / S1_COLLECTION / s1_item_id(acq)
        hrefs = {}
        for pol, values in (("vv", scene.vv), ("vh", scene.vh)):
            path = item_dir / f"{pol}.tif"
            data = keep_float_precision(np.where(np.isnan(values), S1_NODATA, values))
            write_cog(path, data, grid.transform, grid.epsg, nodata=S1_NODATA)
            hrefs[pol] = str(path.resolve())
        items.append(build_s1_item(acq, grid, hrefs, archive_hash))
    return items


def _chunks(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def _write_truth(land: Landscape, params: ArchiveParams, truth_dir: Path) -> TruthPaths:
    grid = land.grid
    paths = TruthPaths(change_date=truth_dir / "change_date.tif",
                       built_date=truth_dir / "built_date.tif",
                       site_labels=truth_dir / "site_labels.tif",
                       landcover=truth_dir / "landcover.tif",
                       sites=truth_dir / "sites.geojson")
    write_cog(paths.change_date, land.change_date, grid.transform, grid.epsg)
    write_cog(paths.built_date, land.built_date, grid.transform, grid.epsg)
    write_cog(paths.site_labels, land.site_labels, grid.transform, grid.epsg)
    write_cog(paths.landcover, land.landcover, grid.transform, grid.epsg, nodata=0)
    to_wgs84 = Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform
    features = []
    for site in land.sites:
        features.append({
            "type": "Feature", "id": site.site_id,
            "geometry": mapping(shapely.transform(site.polygon_utm, to_wgs84, interleaved=False)),
            "properties": {
                "site_id": site.site_id,
                "construction_start": site.start.isoformat(),
                "built_up": site.built.isoformat(),
                "area_ha": site.area_ha,
                "n_pixels": site.n_pixels,
                "former_landcover": LANDCOVER_NAMES[site.former_landcover],
                "geometry_utm_wkt": site.polygon_utm.wkt,
                "utm_epsg": grid.epsg,
            },
        })
    _write_json(paths.sites, {"type": "FeatureCollection", "features": features})
    return paths


def generate_archive(out_dir: Path | str, params: ArchiveParams | None = None,
                     workers: int | None = None, progress: bool = True) -> Archive:
    """Generate the archive for ``params`` under ``out_dir``, or reuse it if it is there.

    ``workers`` processes render scenes in parallel (default: up to 2); every scene's
    randomness depends only on (seed, sensor, index), so the output does not depend on it.
    """
    params = params or ArchiveParams()
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Two processes asking for the same archive at once: the second waits, then reuses it.
    with open(root / ".generate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _generate_locked(root, params, workers, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _generate_locked(root: Path, params: ArchiveParams, workers: int | None,
                     progress: bool) -> Archive:
    param_hash = params.param_hash()
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            existing = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = {}
        if existing.get("param_hash") == param_hash and existing.get("complete"):
            log.info("reusing synthetic archive %s (hash %s)", root, param_hash)
            return load_archive(root)
    for name in _OWNED:  # stale or partial: only remove what this generator writes
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    land = _landscape_for(params)
    grid = land.grid
    truth = _write_truth(land, params, root / "truth")
    s2_acqs = plan_s2_acquisitions(params)
    s1_acqs = plan_s1_acquisitions(params)
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    jobs = [(_render_s2, c) for c in _chunks(len(s2_acqs), 8)]
    jobs += [(_render_s1, c) for c in _chunks(len(s1_acqs), 12)]
    results: dict[str, list[dict[str, Any]]] = {S2_COLLECTION: [], S1_COLLECTION: []}
    bar = tqdm(total=len(s2_acqs) + len(s1_acqs), unit="scene", disable=not progress,
               desc=f"synthetic {params.name}")
    try:
        if n_workers <= 1:
            for fn, chunk in jobs:
                items = fn(params, str(root), param_hash, chunk)
                results[items[0]["collection"]].extend(items)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                futures = [(pool.submit(fn, params, str(root), param_hash, chunk), len(chunk))
                           for fn, chunk in jobs]
                for fut, n in futures:
                    items = fut.result()
                    results[items[0]["collection"]].extend(items)
                    bar.update(n)
    finally:
        bar.close()

    aoi = params.aoi_wgs84()
    bbox = [round(v, 9) for v in aoi.bounds]
    t_start = datetime(params.start.year, params.start.month, params.start.day, tzinfo=UTC)
    t_end = datetime(params.end.year, params.end.month, params.end.day, 23, 59, 59, tzinfo=UTC)
    collections = {S2_COLLECTION: build_s2_collection(bbox, t_start, t_end),
                   S1_COLLECTION: build_s1_collection(bbox, t_start, t_end)}
    rel: dict[str, Any] = {"collections": {}, "item_collections": {}, "items": {}}
    for cid, coll in collections.items():
        _write_json(root / "collections" / f"{cid}.json", coll)
        items = sorted(results[cid], key=lambda it: it["properties"]["datetime"])
        _write_json(root / "items" / f"{cid}.json",
                    {"type": "FeatureCollection", "features": items})
        rel["collections"][cid] = f"collections/{cid}.json"
        rel["item_collections"][cid] = f"items/{cid}.json"
        rel["items"][cid] = []
        for item in items:
            _write_json(root / "items" / cid / f"{item['id']}.json", item)
            rel["items"][cid].append(f"items/{cid}/{item['id']}.json")
    seconds = time.perf_counter() - t0
    lc_counts = np.bincount(land.landcover.ravel(), minlength=7)
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "param_hash": param_hash,
        "params": params.to_dict(),
        "grid": grid.to_dict(),
        "aoi": mapping(aoi),
        **rel,
        "truth": {k: str(Path(v).relative_to(root)) for k, v in vars(truth).items()},
        "counts": {S2_COLLECTION: len(results[S2_COLLECTION]),
                   S1_COLLECTION: len(results[S1_COLLECTION]),
                   "sites": len(land.sites),
                   "site_pixels": int((land.site_labels > 0).sum()),
                   "cropland_parcels": int(land.parcel_id.max() + 1)},
        "landcover_classes": {str(k): v for k, v in LANDCOVER_NAMES.items()},
        "landcover_fractions": {LANDCOVER_NAMES[k]: round(float(lc_counts[k]) / grid.n_pixels, 4)
                                for k in LANDCOVER_NAMES},
        "units": {
            S2_COLLECTION: ("uint16 reflectance x 10000 (scale 0.0001); +1000 where "
                            "earthsearch:boa_offset_applied is true (raster:bands offset -0.1); "
                            "0 = no data; SCL uint8 classes at 20 m"),
            S1_COLLECTION: f"float32 {S1_UNIT}; nodata {S1_NODATA}",
            "truth": "dates are int32 days since 1970-01-01, 0 = none",
        },
        "generation_seconds": round(seconds, 2),
        "generated_at": datetime.now(UTC).isoformat(),
        "complete": True,
    }
    _write_json(manifest_path, manifest)
    log.info("generated synthetic archive %s in %.1f s", root, seconds)
    return load_archive(root)


def load_archive(out_dir: Path | str) -> Archive:
    """Open an archive that ``generate_archive`` completed."""
    root = Path(out_dir).resolve()
    manifest_path = root / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as exc:
        raise SyntheticArchiveError(
            f"no synthetic archive at {root} ({MANIFEST} is missing)",
            "generate it: urban-monitor synthetic generate --out DIR") from exc
    except json.JSONDecodeError as exc:
        raise SyntheticArchiveError(f"manifest {manifest_path} is not valid JSON: {exc}",
                                    "generate the archive again") from exc
    if not manifest.get("complete"):
        raise SyntheticArchiveError(f"synthetic archive {root} is incomplete",
                                    "generate it again into the same folder")
    params = ArchiveParams.from_dict(manifest["params"])
    g = manifest["grid"]
    grid = CityGrid(epsg=int(g["epsg"]), origin_x=float(g["origin_x"]),
                    origin_y=float(g["origin_y"]), width=int(g["width"]),
                    height=int(g["height"]), pixel_size=float(g["pixel_size"]))
    archive = Archive(
        root=root, params=params, param_hash=manifest["param_hash"], grid=grid,
        aoi=shape(manifest["aoi"]),
        collection_paths={k: root / v for k, v in manifest["collections"].items()},
        item_collection_paths={k: root / v for k, v in manifest["item_collections"].items()},
        item_paths={k: [root / p for p in v] for k, v in manifest["items"].items()},
        truth=TruthPaths(**{k: root / v for k, v in manifest["truth"].items()}),
        manifest=manifest,
    )
    sample = next((p for paths in archive.item_paths.values() for p in paths[:1]), None)
    if sample is not None:
        item = json.loads(sample.read_text())
        href = next(iter(item["assets"].values()))["href"]
        if not Path(href).exists():
            raise SyntheticArchiveError(
                f"synthetic archive {root} points at {href}, which does not exist "
                "(was the folder moved?)", "generate it again in its new place")
    return archive
