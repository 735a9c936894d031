"""A generated synthetic archive: real COG files, real-shaped STAC items, truth that
matches the imagery, and confusers that change but come back."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from monitor.errors import SyntheticArchiveError
from monitor.synthetic.archive import generate_archive, load_archive
from monitor.synthetic.landscape import CROPLAND, SEASONAL_WATER, WATER, to_epoch_days
from monitor.synthetic.params import ArchiveParams

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PARAMS = ArchiveParams(size_km=1.0, start=date(2019, 1, 1), end=date(2020, 12, 31), n_sites=5,
                       seed=11)
CLEAR_SCL = (4, 5, 6)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return generate_archive(tmp_path_factory.mktemp("synthetic"), PARAMS, workers=1,
                            progress=False)


def _read(href: str) -> np.ndarray:
    with rasterio.open(href) as src:
        return src.read(1)


def test_files_are_cogs_with_the_right_crs_resolution_and_dtype(archive) -> None:
    s2 = archive.items("sentinel-2-l2a")[0]
    expect = {"blue": (10, "uint16"), "green": (10, "uint16"), "red": (10, "uint16"),
              "nir": (10, "uint16"), "swir16": (20, "uint16"), "swir22": (20, "uint16"),
              "scl": (20, "uint8")}
    for key, (res, dtype) in expect.items():
        with rasterio.open(s2["assets"][key]["href"]) as src:
            assert src.crs.to_epsg() == archive.grid.epsg == 32631
            assert src.res == (res, res)
            assert src.dtypes[0] == dtype and src.nodata == 0
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert src.bounds.left == archive.grid.origin_x
            assert src.bounds.top == archive.grid.origin_y
            assert list(src.shape) == s2["assets"][key]["proj:shape"]
    s1 = archive.items("sentinel-1-rtc")[0]
    for key in ("vv", "vh"):
        with rasterio.open(s1["assets"][key]["href"]) as src:
            assert src.crs.to_epsg() == 32631 and src.res == (10, 10)
            assert src.dtypes[0] == "float32" and src.nodata == -32768
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    for path in (archive.truth.change_date, archive.truth.site_labels, archive.truth.built_date):
        with rasterio.open(path) as src:
            assert src.dtypes[0] == "int32" and src.shape == archive.grid.shape


def test_counts_dates_and_latency(archive) -> None:
    s2, s1 = archive.items("sentinel-2-l2a"), archive.items("sentinel-1-rtc")
    assert len(s2) == archive.manifest["counts"]["sentinel-2-l2a"]
    assert 145 <= len(s2) <= 147  # every 5 days over two years
    assert 110 <= len(s1) <= 125
    assert len(archive.item_paths["sentinel-2-l2a"]) == len(s2)
    for item in s2 + s1:
        p = item["properties"]
        acquired = datetime.fromisoformat(p["datetime"].replace("Z", "+00:00"))
        published = datetime.fromisoformat(p["published"].replace("Z", "+00:00"))
        assert published > acquired
    covers = [it["properties"]["eo:cloud_cover"] for it in s2]
    assert min(covers) == 0 and max(covers) > 95
    assert not any(it["properties"]["earthsearch:boa_offset_applied"] for it in s2)
    assert {it["properties"]["sat:orbit_state"] for it in s1} == {"ascending", "descending"}


def test_items_mirror_the_real_provider_items(archive) -> None:
    es = DATA / "stac" / "earth-search__sentinel-2-l2a__items.json"
    pc = DATA / "stac" / "planetarycomputer__sentinel-1-rtc__items.json"
    if not es.exists() or not pc.exists():
        pytest.skip(f"real STAC responses not found under {DATA / 'stac'}")
    extra = {"published", "proj:code", "synthetic:archive", "synthetic:backscatter_unit",
             "created"}
    for real_file, ours in ((es, archive.items("sentinel-2-l2a")[0]),
                            (pc, archive.items("sentinel-1-rtc")[0])):
        real = json.loads(real_file.read_text())["features"][0]
        assert set(ours) <= set(real) | {"links"}
        missing = set(ours["properties"]) - set(real["properties"]) - extra
        assert not missing, missing
        assert set(ours["assets"]) <= set(real["assets"])
        for key, asset in ours["assets"].items():
            real_band = real["assets"][key]["raster:bands"][0]
            assert asset["raster:bands"][0]["data_type"] == real_band["data_type"]
            assert asset["raster:bands"][0]["nodata"] == real_band["nodata"]
            assert asset["type"] == real["assets"][key]["type"]


def _series(archive, site_mask: np.ndarray) -> tuple[list[int], list[float], list[float]]:
    """Per clear S2 scene: day, mean NDVI and mean SWIR16 over ``site_mask``."""
    days, ndvi, swir = [], [], []
    mask20 = site_mask[::2, ::2]
    for item in archive.items("sentinel-2-l2a"):
        scl = _read(item["assets"]["scl"]["href"])
        if not np.isin(scl[mask20], CLEAR_SCL).all():
            continue
        red = _read(item["assets"]["red"]["href"])[site_mask] / 1e4
        nir = _read(item["assets"]["nir"]["href"])[site_mask] / 1e4
        sw = _read(item["assets"]["swir16"]["href"])[mask20] / 1e4
        days.append(to_epoch_days(date.fromisoformat(item["properties"]["datetime"][:10])))
        ndvi.append(float(np.mean((nir - red) / (nir + red))))
        swir.append(float(sw.mean()))
    return days, ndvi, swir


def test_truth_matches_the_imagery(archive) -> None:
    labels = _read(archive.truth.site_labels)
    sites = archive.sites()
    assert len(sites) == 5
    checked_optical = checked_radar = 0
    s1_items = archive.items("sentinel-1-rtc")
    for site in sites:
        props = site["properties"]
        mask = labels == props["site_id"]
        start = to_epoch_days(date.fromisoformat(props["construction_start"]))
        built = to_epoch_days(date.fromisoformat(props["built_up"]))
        days, ndvi, swir = _series(archive, mask)
        d = np.asarray(days)
        before, after = d < start, (d >= start + 5) & (d < built)
        if before.sum() >= 2 and after.sum() >= 1:
            assert np.mean(np.asarray(ndvi)[after]) < np.mean(np.asarray(ndvi)[before]) - 0.1
            assert np.mean(np.asarray(swir)[after]) > np.mean(np.asarray(swir)[before])
            checked_optical += 1
        vv_before, vv_after = [], []
        for item in s1_items:
            day = to_epoch_days(date.fromisoformat(item["properties"]["datetime"][:10]))
            if day < start or day > built:
                vv = _read(item["assets"]["vv"]["href"])[mask]
                vv = vv[vv != -32768]
                if vv.size:
                    (vv_before if day < start else vv_after).append(float(vv.mean()))
        if len(vv_before) >= 3 and len(vv_after) >= 3:
            assert np.mean(vv_after) > 2 * np.mean(vv_before)  # double bounce of new buildings
            checked_radar += 1
    assert checked_optical >= 2 and checked_radar >= 1


def test_no_change_outside_the_sites_in_the_long_run(archive) -> None:
    """Cropland is harvested (NDVI collapses) but greens up again; seasonal water comes and
    goes; neither counts as change and both look the same a year later."""
    lc = _read(archive.truth.landcover)
    change = _read(archive.truth.change_date)
    crop = (lc == CROPLAND) & (change == 0)
    days, ndvi, _ = _series(archive, crop & (np.arange(crop.size).reshape(crop.shape) % 7 == 0))
    ndvi_arr, d = np.asarray(ndvi), np.asarray(days)
    assert ndvi_arr.max() - ndvi_arr.min() > 0.2
    first = ndvi_arr[d < to_epoch_days(date(2020, 1, 1))]
    second = ndvi_arr[d >= to_epoch_days(date(2020, 1, 1))]
    assert abs(np.median(first) - np.median(second)) < 0.1  # stable year on year
    seasonal = lc == SEASONAL_WATER
    if seasonal.sum() >= 20:
        water_frac = []
        for item in archive.items("sentinel-2-l2a"):
            scl = _read(item["assets"]["scl"]["href"])
            clear = np.isin(scl, CLEAR_SCL)
            m = seasonal[::2, ::2] & clear
            if m.sum() > 10:
                water_frac.append(float((scl[m] == 6).mean()))
        assert max(water_frac) > 0.5 and min(water_frac) < 0.5
    assert not (change[lc == WATER] > 0).any()


def test_generation_is_cached_and_deterministic(archive, tmp_path) -> None:
    t0 = time.perf_counter()
    again = generate_archive(archive.root, PARAMS, workers=1, progress=False)
    assert time.perf_counter() - t0 < 1.0
    assert again.param_hash == archive.param_hash
    small = replace(PARAMS, size_km=0.5, end=date(2019, 2, 10))
    a = generate_archive(tmp_path / "a", small, workers=1, progress=False)
    b = generate_archive(tmp_path / "b", small, workers=2, progress=False)
    for ia, ib in zip(a.items("sentinel-2-l2a"), b.items("sentinel-2-l2a"), strict=True):
        assert ia["id"] == ib["id"]
        np.testing.assert_array_equal(_read(ia["assets"]["red"]["href"]),
                                      _read(ib["assets"]["red"]["href"]))
    other = generate_archive(tmp_path / "a", replace(small, seed=99), workers=1, progress=False)
    assert other.param_hash != a.param_hash and other.params.seed == 99


def test_load_archive_errors_say_what_to_do(tmp_path) -> None:
    with pytest.raises(SyntheticArchiveError, match="synthetic generate"):
        load_archive(tmp_path)


def test_truth_scores_perfectly_against_itself(archive) -> None:
    from monitor.domain.scoring import ChangePrediction, score_change

    truth = archive.change_truth()
    start, end = archive.period_days()
    changed = truth.change_date > 0
    perfect = ChangePrediction(confirmed=changed, change_date=truth.change_date,
                               confirmation_date=truth.change_date + 10 * changed)
    score = score_change(truth, perfect, archive.grid.pixel_size**2, (start, end))
    assert score.pixel_f1 == 1.0 and score.object_recall == 1.0 and score.n_sites == 5
    assert score.delay_median_days == 10.0 and score.false_alerts == 0
