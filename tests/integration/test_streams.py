"""The real-imagery stream benchmark package (monitor.streams) on a small crop of a real city.

A 96 x 96 px window of the real OSCD city ``paris`` (13 Sentinel-2 bands per date, the
change label) and the same area of its three real Sentinel-1 orbits are cut out with
rasterio, keeping their georeferencing, into an OSCD-layout folder; the stream is built
from it (``build_stream``), read back scene by scene (``stream_scenes``), replayed through
the shipped ONNX change models (``replay_stream`` / ``replay_and_score``) and replayed
again from the recorded p(change) as the calibration does (``fast_replay``, ``run_grid``,
``llr_samples``, ``objective``), and the benchmark's model choice and settings. Nothing is
mocked: real files, real models, real state.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds
from scipy import ndimage
from scipy.stats import rankdata

from monitor.domain.alert_scoring import AlertScore
from monitor.domain.calibration import fit_llr
from monitor.domain.state import StateParams
from monitor.streams import calibrate
from monitor.streams.archive import StreamArchive, build_stream, load_stream
from monitor.streams.oscd import BAND_KEYS
from monitor.streams.replay import (
    Scene,
    load_predictors,
    replay_and_score,
    replay_stream,
    stream_scenes,
)
from monitor.streams.simulate import StreamParams
from tests.stac_validation import validate

CITY = "paris"
# The 96 x 96 px window (of the 10 m bands) of paris with the most change: 4 sites.
ROW, COL, SIZE = 24, 173, 96
S1_ORBITS = [8, 59, 110]
# Small and fast: one S2 pass every 10 days and one per S1 orbit every 24, a 100-day
# lead-in (the state's baseline is 90 days), 60 days after date 2.
PARAMS = StreamParams(seed=0, baseline_days=100, after_days=60, s2_revisit_days=10,
                      s1_repeat_days=24)
MAX_CLOUD_COVER = 80.0  # stream_scenes' default discovery filter


# ------------------------------------------------------------------ the cropped city
def _write_window(src_path: Path, dst_path: Path, window: Window) -> None:
    """Copy ``window`` of a GeoTIFF, keeping CRS and (window) transform when it has them."""
    with warnings.catch_warnings():  # OSCD labels carry no georeference
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src_path) as src:
            data = src.read(window=window)
            profile = src.profile.copy()
            for key in ("blockxsize", "blockysize", "tiled"):
                profile.pop(key, None)
            profile.update(height=data.shape[1], width=data.shape[2])
            if src.crs is not None:
                profile["transform"] = src.window_transform(window)
            dst_path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(dst_path, "w", **profile) as dst:
                dst.write(data)


def _covering_window(src: Any, bounds: tuple[float, float, float, float], pad: int) -> Window:
    """The whole-pixel window of ``src`` covering ``bounds``, ``pad`` px wider each side."""
    w = from_bounds(*bounds, transform=src.transform)
    c0 = max(0, math.floor(w.col_off) - pad)
    r0 = max(0, math.floor(w.row_off) - pad)
    c1 = min(src.width, math.ceil(w.col_off + w.width) + pad)
    r1 = min(src.height, math.ceil(w.row_off + w.height) + pad)
    return Window(c0, r0, c1 - c0, r1 - r0)


@dataclass(frozen=True)
class Crop:
    oscd: Path               # OSCD-layout root holding the one cropped city
    s1: Path                 # oscd-s1 layout folder with the city's cropped orbits
    cm: np.ndarray           # the cropped change label (1 = no change, 2 = change)
    transform: Affine        # of the cropped 10 m bands (EPSG:4326)
    date_1: date
    date_2: date


def crop_city(data: Path, dst: Path) -> Crop:
    """Every GeoTIFF of ``CITY`` (and its S1 files) cut to the window, dates.txt copied."""
    src_city, dst_city = data / "oscd" / CITY, dst / "oscd" / CITY
    dst_city.mkdir(parents=True)
    shutil.copy(src_city / "dates.txt", dst_city / "dates.txt")
    window = Window(COL, ROW, SIZE, SIZE)
    b02 = sorted((src_city / "imgs_1").glob("*_B02.tif"))[0]
    with rasterio.open(b02) as src:
        bounds = window_bounds(window, src.transform)
        res_10m = src.res
    for folder in ("imgs_1", "imgs_2"):
        for tif in sorted((src_city / folder).glob("*.tif")):
            with rasterio.open(tif) as src:  # 20 m and 60 m bands: the covering window
                w = window if src.res == res_10m else _covering_window(src, bounds, 1)
            _write_window(tif, dst_city / folder / tif.name, w)
    for tif in sorted((src_city / "cm").glob("*-cm.tif")):
        _write_window(tif, dst_city / "cm" / tif.name, window)  # on the 10 m bands' grid
    for tif in sorted((data / "oscd-s1").glob(f"sentinel1_{CITY}_*.tif")):
        with rasterio.open(tif) as src:  # its own, finer EPSG:4326 grid
            w = _covering_window(src, bounds, 2)
        _write_window(tif, dst / "oscd-s1" / tif.name, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(dst_city / "cm" / f"{CITY}-cm.tif") as src:
            cm = src.read(1)
    with rasterio.open(sorted((dst_city / "imgs_1").glob("*_B02.tif"))[0]) as src:
        transform = src.transform
    d = dict(line.split(":") for line in (src_city / "dates.txt").read_text().split("\n") if line)
    day = {k.strip(): datetime.strptime(v.strip(), "%Y%m%d").date() for k, v in d.items()}
    return Crop(dst / "oscd", dst / "oscd-s1", cm, transform, day["date_1"], day["date_2"])


@pytest.fixture(scope="module")
def crop(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Crop:
    if not (shared_data / "oscd-s1").is_dir():
        pytest.skip(f"real Sentinel-1 folder {shared_data / 'oscd-s1'} is absent")
    return crop_city(shared_data, tmp_path_factory.mktemp("crop"))


@pytest.fixture(scope="module")
def archive(crop: Crop, tmp_path_factory: pytest.TempPathFactory) -> StreamArchive:
    return build_stream(crop.oscd, CITY, tmp_path_factory.mktemp("streams"), s1_root=crop.s1,
                        params=PARAMS, workers=1, progress=False)


@pytest.fixture(scope="module")
def other(crop: Crop, tmp_path_factory: pytest.TempPathFactory) -> StreamArchive:
    """The same city and parameters with another seed."""
    return build_stream(crop.oscd, CITY, tmp_path_factory.mktemp("streams-seed-1"),
                        s1_root=crop.s1, params=replace(PARAMS, seed=1), workers=1,
                        progress=False)


@dataclass
class Passes:
    cache: Path
    cold: list[Scene]       # the first pass (scenes read from the COGs, cache written)
    warm: list[Scene]       # the second pass
    mtimes: dict[str, int]  # cache file -> mtime_ns after the first pass


@pytest.fixture(scope="module")
def passes(archive: StreamArchive, tmp_path_factory: pytest.TempPathFactory) -> Passes:
    cache = tmp_path_factory.mktemp("cache")
    cold = list(stream_scenes(archive, cache))
    (folder,) = (cache / "scenes").iterdir()  # one build of the stream: one folder
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    warm = list(stream_scenes(archive, cache))
    return Passes(cache, cold, warm, mtimes)


@pytest.fixture(scope="module")
def models(repo_root: Path) -> dict[str, Any]:
    folder = repo_root / "models" / "artifacts"
    paths = [folder / f"change_{m}.onnx" for m in ("s2", "s1", "dual")]
    assert all(p.is_file() for p in paths), f"shipped models missing in {folder}"
    return load_predictors(*(str(p) for p in paths))


@pytest.fixture(scope="module")
def recorded(archive: StreamArchive, models: dict[str, Any], passes: Passes
             ) -> tuple[Any, dict[str, np.ndarray]]:
    return replay_stream(archive, StateParams(), models, cache_dir=passes.cache, record=True)


@pytest.fixture(scope="module")
def scored_run(archive: StreamArchive, models: dict[str, Any], passes: Passes
               ) -> tuple[AlertScore, dict[str, np.ndarray]]:
    score, _, p_cache = replay_and_score(archive, StateParams(), models, cache_dir=passes.cache,
                                         record=True)
    return score, p_cache


@pytest.fixture(scope="module")
def scored(scored_run: tuple[AlertScore, dict[str, np.ndarray]]) -> AlertScore:
    return scored_run[0]


def _masks(scenes: list[Scene]) -> list[tuple[str, str, str | None, date, np.ndarray]]:
    return [(s.scene_id, s.modality, s.orbit, s.acquired, s.valid) for s in scenes]


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve of scores ``p`` for labels ``y`` (Mann-Whitney)."""
    ranks = rankdata(p)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _when(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))


# ------------------------------------------------------------------ build_stream
def test_the_crop_is_a_georeferenced_window_of_the_real_city_with_change(
        crop: Crop, shared_data: Path) -> None:
    src_b02 = sorted((shared_data / "oscd" / CITY / "imgs_1").glob("*_B02.tif"))[0]
    with rasterio.open(src_b02) as src:
        assert crop.transform == src.window_transform(Window(COL, ROW, SIZE, SIZE))
        whole = src.read(1)
    with rasterio.open(sorted((crop.oscd / CITY / "imgs_1").glob("*_B02.tif"))[0]) as dst:
        assert dst.crs.to_epsg() == 4326
        assert np.array_equal(dst.read(1), whole[ROW:ROW + SIZE, COL:COL + SIZE])
    assert crop.cm.shape == (SIZE, SIZE) and set(np.unique(crop.cm)) == {1, 2}
    assert (crop.cm == 2).sum() > 100
    assert sorted(p.name for p in crop.s1.iterdir()) == sorted(
        f"sentinel1_{CITY}_{o}_t{t}.tif" for o in S1_ORBITS for t in (1, 2))


def test_build_stream_manifest_counts_the_planned_scenes_and_the_sites(
        archive: StreamArchive, crop: Crop) -> None:
    m = archive.manifest
    assert m["complete"] and m["city"] == CITY and m["params"] == PARAMS.to_dict()
    assert (archive.date_1, archive.date_2) == (crop.date_1, crop.date_2)
    assert archive.start == crop.date_1 - timedelta(days=PARAMS.baseline_days)
    assert archive.end == crop.date_2 + timedelta(days=PARAMS.after_days)
    assert m["s1_orbits"] == S1_ORBITS
    counts = m["counts"]
    s2 = archive.items("sentinel-2-l2a")
    s1 = archive.items("sentinel-1-rtc")
    assert counts["sentinel-2-l2a"] == len(s2) > 0 and counts["sentinel-1-rtc"] == len(s1) > 0
    # S2: every revisit from the start (100 days = 10 revisits before date 1) to the end
    days = [_when(i).date() for i in s2]
    assert len(s2) == (archive.end - archive.start).days // PARAMS.s2_revisit_days + 1
    assert {(b - a).days for a, b in zip(days, days[1:], strict=False)} == {10}
    assert crop.date_1 in days and days[0] >= archive.start and days[-1] <= archive.end
    # S1: each real orbit every s1_repeat_days over the whole period
    per_orbit: dict[int, list[date]] = defaultdict(list)
    for item in s1:
        per_orbit[item["properties"]["sat:relative_orbit"]].append(_when(item).date())
    assert sorted(per_orbit) == S1_ORBITS
    span = (archive.end - archive.start).days
    for orbit_days in per_orbit.values():
        repeat = PARAMS.s1_repeat_days
        assert span // repeat <= len(orbit_days) <= span // repeat + 1
        assert {(b - a).days for a, b in zip(orbit_days, orbit_days[1:], strict=False)} == {
            repeat}
    truth = archive.change_truth()
    assert counts["sites"] == 4 == int(truth.site_labels.max())
    assert counts["change_pixels"] == int((truth.site_labels > 0).sum())
    assert counts["inside_pixels"] == int(archive.inside().sum())
    assert archive.grid.shape == (m["grid"]["height"], m["grid"]["width"])


def test_change_truth_marks_the_cropped_change_pixels_one_site_per_component(
        archive: StreamArchive, crop: Crop) -> None:
    truth = archive.change_truth()
    changed = truth.site_labels > 0
    assert changed.any() and not (changed & ~archive.inside()).any()
    # each grid pixel centre, looked up in the cropped label through its georeference
    g = archive.grid
    rows, cols = np.mgrid[0:g.height, 0:g.width]
    x = g.origin_x + (cols + 0.5) * g.pixel_size
    y = g.origin_y - (rows + 0.5) * g.pixel_size
    lon, lat = Transformer.from_crs(g.epsg, 4326, always_xy=True).transform(x, y)
    c, r = ~crop.transform @ (lon, lat)
    r, c = np.floor(r).astype(int), np.floor(c).astype(int)
    within = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
    inside = archive.inside()
    # (GDAL warps with an approximate transformer: a centre on the window's edge may count)
    assert (inside & ~within).sum() <= 0.001 * inside.sum()
    label = crop.cm[np.clip(r, 0, SIZE - 1), np.clip(c, 0, SIZE - 1)] == 2
    agree = (label == changed)[inside & within].mean()
    assert agree > 0.995, f"truth and the cropped label agree on {agree:.4f} of the pixels"
    # 10 m grid pixels vs ~8.5 x 12.9 m label pixels: about 1.1 grid pixels per label pixel
    ratio = changed.sum() / (crop.cm == 2).sum()
    assert 0.9 < ratio < 1.3
    # one site per 8-connected component, one change date per site, between the dates
    components, n = ndimage.label(changed, structure=np.ones((3, 3), bool))
    assert n == int(truth.site_labels.max())
    for k in range(1, n + 1):
        assert len(np.unique(truth.site_labels[components == k])) == 1
    lo = crop.date_1 + timedelta(days=PARAMS.change_margin_days)
    hi = crop.date_2 - timedelta(days=PARAMS.change_margin_days)
    epoch = date(1970, 1, 1)
    features = {f["properties"]["site_id"]: f["properties"] for f in archive.sites()}
    assert sorted(features) == list(range(1, n + 1))
    for site_id, props in features.items():
        site_days = np.unique(truth.change_date[truth.site_labels == site_id])
        assert len(site_days) == 1
        day = epoch + timedelta(days=int(site_days[0]))
        assert lo <= day <= hi
        assert props["change_date"] == day.isoformat()
        assert props["n_pixels"] == int((truth.site_labels == site_id).sum())
    assert (truth.change_date[~changed] == 0).all()


def test_stream_items_are_stac_items_whose_assets_exist_on_the_archive_grid(
        archive: StreamArchive) -> None:
    items = archive.items()
    assert [i["properties"]["datetime"] for i in items] == sorted(
        i["properties"]["datetime"] for i in items)
    assert len({i["id"] for i in items}) == len(items)
    g = archive.grid
    for item in items:
        assert item["type"] == "Feature" and item["collection"] in archive.collection_paths
        assert item["properties"]["streams:city"] == CITY
        assert item["properties"]["proj:epsg"] == g.epsg
        assert archive.start <= _when(item).date() <= archive.end
        assert item["bbox"][0] < item["bbox"][2] and item["bbox"][1] < item["bbox"][3]
        keys = set(item["assets"])
        if item["collection"] == "sentinel-2-l2a":
            assert {*BAND_KEYS, "scl"} <= keys
        else:
            assert keys == {"vv"} and item["properties"]["sar:polarizations"] == ["VV"]
        for asset in item["assets"].values():
            assert Path(asset["href"]).is_file(), asset["href"]
    # the rasters are what the items say: the grid at 10 m (20 m bands and SCL at 20 m)
    first_s2 = archive.items("sentinel-2-l2a")[0]
    for key, asset in first_s2["assets"].items():
        with rasterio.open(asset["href"]) as src:
            assert src.crs.to_epsg() == g.epsg
            assert list(src.shape) == asset["proj:shape"], key
            assert list(src.transform)[:6] == [float(v) for v in asset["proj:transform"][:6]]
    with rasterio.open(archive.items("sentinel-1-rtc")[0]["assets"]["vv"]["href"]) as src:
        assert src.shape == g.shape and src.crs.to_epsg() == g.epsg
        assert tuple(src.transform)[:6] == g.transform
        vv = src.read(1)
        assert src.nodata is not None and (vv[vv != src.nodata] > 0).all()
    # STAC core schemas (offline), as a STAC API serves them (with their collection link)
    for cid, path in archive.collection_paths.items():
        validate(pystac.Collection.from_dict(json.loads(path.read_text())))
        some = archive.items(cid)
        for item in (some[0], some[-1]):
            link = {"rel": "collection", "href": str(path), "type": "application/json"}
            validate(pystac.Item.from_dict({**item, "links": [*item["links"], link]}))


def test_rebuilding_with_the_same_params_reuses_the_archive(
        archive: StreamArchive, crop: Crop) -> None:
    assets = sorted((archive.root / "assets").rglob("*.tif"))
    before = {p: p.stat().st_mtime_ns for p in assets}
    again = build_stream(crop.oscd, CITY, archive.root.parent, s1_root=crop.s1, params=PARAMS,
                         workers=1, progress=False)
    assert again.manifest == archive.manifest  # same generated_at: not rebuilt
    assert load_stream(archive.root).manifest == archive.manifest
    assert {p: p.stat().st_mtime_ns for p in assets} == before


def test_another_seed_gives_another_stream(archive: StreamArchive, other: StreamArchive
                                           ) -> None:
    assert other.manifest["param_hash"] != archive.manifest["param_hash"]
    truth_0, truth_1 = archive.change_truth(), other.change_truth()
    assert np.array_equal(truth_0.site_labels, truth_1.site_labels)  # same real sites ...
    assert not np.array_equal(truth_0.change_date, truth_1.change_date)  # ... other dates
    s2_0, s2_1 = archive.items("sentinel-2-l2a"), other.items("sentinel-2-l2a")
    assert [i["id"] for i in s2_0] == [i["id"] for i in s2_1]  # the same passes ...
    clouds_0 = [i["properties"]["eo:cloud_cover"] for i in s2_0]
    clouds_1 = [i["properties"]["eo:cloud_cover"] for i in s2_1]
    assert clouds_0 != clouds_1  # ... with other weather
    blue_0 = Path(s2_0[0]["assets"]["blue"]["href"]).read_bytes()
    assert blue_0 != Path(s2_1[0]["assets"]["blue"]["href"]).read_bytes()
    assert ({i["properties"]["datetime"] for i in archive.items("sentinel-1-rtc")}
            != {i["properties"]["datetime"] for i in other.items("sentinel-1-rtc")})


def test_a_rebuild_with_other_params_replaces_the_stream_byte_for_byte_in_two_processes(
        archive: StreamArchive, other: StreamArchive, crop: Crop, tmp_path: Path) -> None:
    shutil.copytree(other.root, tmp_path / CITY)  # a seed-1 stream, rebuilt with seed 0
    again = build_stream(crop.oscd, CITY, tmp_path, s1_root=crop.s1, params=PARAMS,
                         workers=2, progress=False)
    assert again.root == (tmp_path / CITY).resolve()
    assert again.manifest["param_hash"] == archive.manifest["param_hash"]
    assert again.manifest["counts"] == archive.manifest["counts"]
    files = sorted(p.relative_to(archive.root) for p in (archive.root / "assets").rglob("*.tif"))
    assert files == sorted(p.relative_to(again.root)
                           for p in (again.root / "assets").rglob("*.tif"))  # nothing stale
    for rel in files:
        assert (archive.root / rel).read_bytes() == (again.root / rel).read_bytes(), rel
    for name in ("change_date.tif", "site_labels.tif", "inside.tif"):
        truth_file = Path("truth") / name
        assert (archive.root / truth_file).read_bytes() == (again.root / truth_file).read_bytes()


# ------------------------------------------------------------------ stream_scenes
def test_stream_scenes_yields_usable_scenes_in_acquisition_order_on_the_grid(
        archive: StreamArchive, passes: Passes) -> None:
    scenes = passes.cold
    h, w = archive.grid.shape
    items = {i["id"]: i for i in archive.items()}
    assert [s.acquired for s in scenes] == sorted(s.acquired for s in scenes)
    order = list(items)
    assert [order.index(s.scene_id) for s in scenes] == sorted(
        order.index(s.scene_id) for s in scenes)
    counts = Counter(s.modality for s in scenes)
    assert counts["s2"] > 0 and counts["s1"] > 0
    for s in scenes:
        item = items[s.scene_id]
        assert s.acquired == _when(item).date()
        assert s.valid.shape == (h, w) and s.valid.dtype == np.bool_ and s.valid.mean() >= 0.005
        finite = np.isfinite(s.values).all(axis=0)
        assert finite[s.valid].all()
        if s.modality == "s2":
            assert np.array_equal(finite, s.valid)  # NaN exactly where not usable
            assert s.values.shape == (6, h, w) and s.orbit is None
            assert item["properties"]["eo:cloud_cover"] <= MAX_CLOUD_COVER
            assert np.nanmin(s.values) > 0 and np.nanmax(s.values) < 1.5  # reflectance
        else:
            assert s.values.shape == (1, h, w)
            orbit = item["properties"]["sat:relative_orbit"]
            assert s.orbit == f"{item['properties']['sat:orbit_state']}-{orbit}"
            assert s.values.min() >= 0 and s.values.max() <= 1  # scaled dB
            assert (s.values[0][~s.valid] == 0).all()  # no data: the floor (-25 dB), not NaN
            assert s.valid[archive.inside()].mean() > 0.9
    # the overcast S2 passes are left out; every S1 pass is kept
    s2_items = archive.items("sentinel-2-l2a")
    clear_enough = [i for i in s2_items if i["properties"]["eo:cloud_cover"] <= MAX_CLOUD_COVER]
    assert 0 < counts["s2"] <= len(clear_enough) < len(s2_items)
    assert counts["s1"] == len(archive.items("sentinel-1-rtc"))
    assert {s.orbit for s in scenes if s.orbit} == {
        f"{i['properties']['sat:orbit_state']}-{i['properties']['sat:relative_orbit']}"
        for i in archive.items("sentinel-1-rtc")}


def test_stream_scenes_second_pass_reads_the_disk_cache(
        archive: StreamArchive, passes: Passes) -> None:
    (folder,) = (passes.cache / "scenes").iterdir()
    read = {i["id"] for i in archive.items()
            if i["collection"] != "sentinel-2-l2a"
            or i["properties"]["eo:cloud_cover"] <= MAX_CLOUD_COVER}
    assert {p.name for p in folder.iterdir()} == {f"{sid}.npz" for sid in read}
    # the second pass wrote nothing ...
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == passes.mtimes
    assert [s.scene_id for s in passes.warm] == [s.scene_id for s in passes.cold]
    for cold, warm in zip(passes.cold, passes.warm, strict=True):
        assert (warm.modality, warm.orbit, warm.acquired) == (cold.modality, cold.orbit,
                                                              cold.acquired)
        assert np.array_equal(warm.valid, cold.valid)
        # ... and its values are the cache's float16 copies, which the first pass gave too
        assert np.array_equal(warm.values, warm.values.astype(np.float16).astype(np.float32),
                              equal_nan=True)
        assert np.array_equal(warm.values, cold.values, equal_nan=True)


def test_stream_scenes_cache_does_not_serve_another_build_of_the_city(
        other: StreamArchive, passes: Passes, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(passes.cache, cache)  # the seed-0 stream's cache, used as calibrate does
    fresh = {s.scene_id: s for s in stream_scenes(other, None)}
    through_cache = {s.scene_id: s for s in stream_scenes(other, cache)}
    shared = [k for k in fresh if fresh[k].modality == "s2" and f"{k}.npz" in passes.mtimes]
    assert shared  # the two builds share S2 item ids
    assert sorted(through_cache) == sorted(fresh)
    for k in shared:
        np.testing.assert_allclose(through_cache[k].values, fresh[k].values, rtol=1e-3,
                                   atol=1e-6, err_msg=k)


# ------------------------------------------------------------------ replay and calibration
def test_replay_records_p_for_every_scene_after_the_baseline_on_the_grid(
        archive: StreamArchive, passes: Passes,
        recorded: tuple[Any, dict[str, np.ndarray]]) -> None:
    state, p_cache = recorded
    baseline = StateParams().baseline_days
    scenes = {s.scene_id: s for s in passes.warm}
    s2 = [s for s in passes.warm if s.modality == "s2"]
    after = {s.scene_id for s in s2 if (s.acquired - s2[0].acquired).days >= baseline}
    assert after and len(after) < len(s2)
    assert {k for k in p_cache if scenes[k].modality == "s2"} == after
    # S1: radar carries no weight by default, its p is still recorded (for the S1 weight
    # search), for the orbits the state keeps (n_orbits = 2 of the 3) after their baseline
    assert len(state.orbits) == StateParams().n_orbits < len(S1_ORBITS)
    s1_recorded = {k for k in p_cache if scenes[k].modality == "s1"}
    assert s1_recorded and {scenes[k].orbit for k in s1_recorded} == set(state.orbits)
    for orbit in state.orbits:
        first = min(s.acquired for s in passes.warm if s.orbit == orbit)
        assert all((scenes[k].acquired - first).days >= baseline
                   for k in s1_recorded if scenes[k].orbit == orbit)
    for scene_id, p in p_cache.items():
        assert p.shape == archive.grid.shape and p.dtype == np.float16
        finite = np.isfinite(p)
        assert finite.any() and not (finite & ~scenes[scene_id].valid).any()
        assert p[finite].min() >= 0 and p[finite].max() <= 1


def test_fast_replay_from_recorded_p_gives_the_scores_of_the_replay_through_the_models(
        archive: StreamArchive, passes: Passes, recorded: tuple[Any, dict[str, np.ndarray]],
        scored_run: tuple[AlertScore, dict[str, np.ndarray]]) -> None:
    _, p_cache = recorded
    scored, scored_p = scored_run
    # a real result to compare: the shipped models find some of the cropped sites
    assert scored.n_sites == 4 and scored.sites_found >= 1 and scored.alerts_ever > 0
    assert scored.confirmed_in_baseline == 0
    # both replays through the models saw the same p (as recorded: float16)
    assert scored_p and set(scored_p) <= set(p_cache)
    for scene_id, p in scored_p.items():
        assert np.array_equal(p, p_cache[scene_id], equal_nan=True), scene_id
    # from the same p, the values do not matter: fast_replay (zero values) is exact
    fast = calibrate.fast_replay(archive, StateParams(), p_cache, _masks(passes.warm))
    cached, _, _ = replay_and_score(archive, StateParams(), {}, cache_dir=passes.cache,
                                    p_cache=p_cache)
    assert asdict(fast) == asdict(cached)
    # ... and equal to the replay through the models up to the float16 rounding of the
    # recorded p (the models' own p is float32; ~1 % of the values land in another bin of
    # the state's 4096-bin LLR table, which can move a pixel across a threshold)
    assert (fast.n_sites, fast.sites_found) == (scored.n_sites, scored.sites_found)
    assert abs(fast.n_confirmed - scored.n_confirmed) <= 1
    pixels = np.array([[s.pixel_tp, s.pixel_fp, s.pixel_fn] for s in (fast, scored)])
    assert np.abs(pixels[0] - pixels[1]).sum() <= max(3, 0.02 * pixels[1].sum())


def test_run_grid_replays_each_task_as_fast_replay_in_one_or_two_processes(
        archive: StreamArchive, passes: Passes,
        recorded: tuple[Any, dict[str, np.ndarray]]) -> None:
    _, p_cache = recorded
    masks = _masks(passes.warm)
    never_confirms = replace(StateParams(), n_confirm=63)  # ~25 S2 scenes after the baseline
    tasks = [(CITY, StateParams()), (CITY, never_confirms), (CITY, replace(
        StateParams(), h_provisional=5.0, h_confirm=7.0))]
    calibrate._WORK.update(archives={CITY: archive}, caches={CITY: p_cache},
                           masks={CITY: masks})
    try:
        one = calibrate.run_grid(tasks, jobs=1, progress=False)
        two = calibrate.run_grid(tasks, jobs=2, progress=False)
    finally:
        calibrate._WORK.clear()
    assert [asdict(s) for s in one] == [asdict(s) for s in two]
    assert asdict(one[0]) == asdict(calibrate.fast_replay(archive, StateParams(), p_cache, masks))
    assert one[1].n_confirmed == 0 and one[1].sites_found == 0 and one[1].alerts_ever > 0
    assert calibrate.objective(one[0]) > calibrate.objective(one[1])


def test_llr_samples_gives_both_classes_and_the_models_separate_them(
        archive: StreamArchive, passes: Passes,
        recorded: tuple[Any, dict[str, np.ndarray]]) -> None:
    _, p_cache = recorded
    masks = _masks(passes.warm)
    p, y = calibrate.llr_samples(archive, p_cache, masks, "s2", n_per_scene=200)
    n_scenes = sum(1 for s in passes.warm if s.modality == "s2" and s.scene_id in p_cache)
    assert p.dtype == np.float32 and y.dtype == np.bool_ and p.shape == y.shape
    assert 0 < y.sum() < len(y) <= 2 * 200 * n_scenes
    assert np.isfinite(p).all() and p.min() >= 0 and p.max() <= 1
    # positives: changed pixels after their site's date; the S2 model ranks them higher
    assert _auc(p, y) > 0.8
    slope, _ = fit_llr(p, y)
    assert slope > 0
    again = calibrate.llr_samples(archive, p_cache, masks, "s2", n_per_scene=200)
    assert np.array_equal(again[0], p) and np.array_equal(again[1], y)
    p1, y1 = calibrate.llr_samples(archive, p_cache, masks, "s1")
    assert 0 < y1.sum() < len(y1) and _auc(p1, y1) > 0.6
    none = calibrate.llr_samples(archive, {}, masks, "s2")
    assert none[0].size == 0 and none[1].size == 0


def test_objective_ranks_higher_f1_first_and_breaks_ties_by_fewer_false_alerts(
        scored: AlertScore) -> None:
    good = AlertScore(pixel_tp=80, pixel_fp=20, pixel_fn=20, n_sites=4, sites_found=3,
                      n_confirmed=4, confirmed_right=3, false_alerts=1)
    worse = replace(good, sites_found=1, confirmed_right=1, false_alerts=3)
    assert good.object_f1 > worse.object_f1
    assert calibrate.objective(good) > calibrate.objective(worse)
    assert calibrate.objective(replace(good, false_alerts=0)) > calibrate.objective(good)
    assert calibrate.objective(good)[0] == calibrate.objective(replace(good, false_alerts=0))[0]
    # nothing scored at all: NaN figures count as 0 and a retracted share of 1
    assert calibrate.objective(AlertScore()) == (0.0, 0.0)
    missed = replace(scored, pixel_tp=0, sites_found=0, confirmed_right=0,
                     time_errors=[], delays=[])
    assert calibrate.objective(scored) > calibrate.objective(missed)


def test_the_warnings_objective_keeps_f1_first_then_the_retraction_target_then_earliness(
        ) -> None:
    rank = calibrate.OBJECTIVES["warnings"]
    base = AlertScore(pixel_tp=80, pixel_fp=20, pixel_fn=20, n_sites=4, sites_found=3,
                      n_confirmed=4, confirmed_right=3, provisional_ever=10,
                      provisional_ever_retracted=5, warning_delays=[5.0])
    strict = replace(base, provisional_ever_retracted=2, warning_delays=[25.0])   # 0.2: meets
    stricter = replace(base, provisional_ever_retracted=1, warning_delays=[30.0])
    loose_but_early = replace(base, provisional_ever_retracted=3, warning_delays=[0.0])
    # meeting the retraction target beats an earlier warning that misses it
    assert rank(strict) > rank(loose_but_early) > rank(base)
    # among those that meet it, the earlier warning wins even with more retracted
    assert rank(strict) > rank(stricter)
    # what confirms comes first: a better F1 wins whatever the warnings do
    better = replace(base, sites_found=4, confirmed_right=4)
    assert rank(better) > rank(strict)
    assert rank(AlertScore()) == (0.0, False, -1.0)


# ------------------------------------------------------------------ benchmark helpers
def _fold(folder: Path, artifacts: Path, cities: dict[str, list[str]]) -> None:
    """A fold model set: the shipped ONNX files with cards naming other training cities."""
    folder.mkdir(parents=True)
    for model, trained_on in cities.items():
        shutil.copy(artifacts / f"change_{model}.onnx", folder / f"change_{model}.onnx")
        card = json.loads((artifacts / f"change_{model}.card.json").read_text())
        card["training"]["cities"] = trained_on
        (folder / f"change_{model}.card.json").write_text(json.dumps(card))


def test_choose_models_leaves_the_city_out_and_stream_settings_serve_the_archive(
        archive: StreamArchive, scored: AlertScore, repo_root: Path, tmp_path: Path) -> None:
    from monitor.settings import load_settings
    from monitor.streams.benchmark import CityResult, choose_models, format_table, stream_settings

    base = load_settings(None)
    artifacts = repo_root / "models" / "artifacts"
    folds = tmp_path / "folds"
    _fold(folds / "fold_0", artifacts, {"s2": [CITY, "pisa"]})  # saw the city: passed over
    _fold(folds / "fold_1", artifacts, {"s2": ["pisa", "rennes"], "s1": [CITY],
                                        "dual": ["pisa"]})
    choice = choose_models(CITY, folds, base)
    assert choice.folder == "fold_1" and not choice.seen_in_training
    assert choice.s2 == str(folds / "fold_1" / "change_s2.onnx")
    assert choice.s1 == base.models.s1  # the fold's S1 model saw the city: the configured one
    assert choice.dual == str(folds / "fold_1" / "change_dual.onnx")
    shipped = choose_models(CITY, None, base)  # the shipped models trained on every city
    assert shipped.folder == "shipped" and shipped.seen_in_training

    settings = stream_settings(base, archive, "http://127.0.0.1:9/stac", tmp_path / "run", choice,
                               state_params={"h_confirm": 8.0})
    assert [c.id for c in settings.cities] == [CITY]
    assert settings.models.s2 == choice.s2 and settings.models.dual == choice.dual
    assert {src.collection for src in settings.sources} == set(archive.collection_paths)
    assert settings.state.params == {"h_confirm": 8.0}
    assert settings.database.url == f"sqlite:///{tmp_path / 'run' / 'urban-monitor.db'}"

    table = format_table([CityResult(CITY, choice, scored)])
    rows = table.splitlines()
    assert rows[2].startswith(f"| {CITY} | fold_1 |")
    assert f"| {scored.sites_found}/{scored.n_sites} |" in rows[2]
    assert "pooled, 1 unseen" in rows[3]
