"""Simulated Sentinel-2 and Sentinel-1: schedules, clouds and shadows, BOA offset, speckle."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from monitor.synthetic.landscape import BUILT, VEGETATION, WATER, generate_landscape
from monitor.synthetic.params import ArchiveParams
from monitor.synthetic.raster_files import keep_float_precision
from monitor.synthetic.sensors import (
    BOA_ADD_OFFSET,
    SCL_CLOUD_HIGH,
    SCL_CLOUD_MEDIUM,
    SCL_SHADOW,
    plan_s1_acquisitions,
    plan_s2_acquisitions,
    simulate_s1,
    simulate_s2,
)
from monitor.synthetic.stac_items import mgrs_tile

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def params() -> ArchiveParams:
    return ArchiveParams(size_km=1.2, start=date(2019, 1, 1), end=date(2020, 12, 31), n_sites=4)


@pytest.fixture(scope="module")
def land(params):
    return generate_landscape(params.city_grid(), params.start, params.end,
                              params.resolved_n_sites(), params.seed, params.wet_season_peak_doy)


def test_s2_schedule_revisits_every_5_days_with_seasonal_clouds(params) -> None:
    acqs = plan_s2_acquisitions(params)
    gaps = {(b.time.date() - a.time.date()).days for a, b in zip(acqs, acqs[1:], strict=False)}
    assert gaps == {5}
    assert {a.platform for a in acqs} == {"sentinel-2a", "sentinel-2b"}
    clouds = np.array([a.cloud_fraction for a in acqs])
    assert (clouds == 0).sum() >= 10 and (clouds == 1).sum() >= 5  # clear and overcast
    months = np.array([a.time.month for a in acqs])
    wet, dry = clouds[np.isin(months, (6, 7, 8, 9))], clouds[np.isin(months, (12, 1, 2))]
    assert wet.mean() > dry.mean() + 0.2
    assert all(timedelta(minutes=10) < a.latency < timedelta(days=8) for a in acqs)
    assert any(a.latency > timedelta(days=1) for a in acqs)  # some scenes are published late


def test_boa_offset_follows_the_real_switch_date_unless_disabled() -> None:
    p = ArchiveParams(size_km=1, start=date(2022, 1, 1), end=date(2022, 2, 28))
    acqs = plan_s2_acquisitions(p)
    for a in acqs:
        assert a.boa_offset == (a.time.date() >= date(2022, 1, 25))
        assert (a.processing_baseline >= "04.00") == a.boa_offset
    assert not any(a.boa_offset for a in plan_s2_acquisitions(replace(p, boa_offset=False)))


def test_s1_schedule_has_two_orbits_and_nodata_strips(params) -> None:
    acqs = plan_s1_acquisitions(params)
    by_state = {s: [a for a in acqs if a.orbit_state == s] for s in ("ascending", "descending")}
    assert all(len(v) > 50 for v in by_state.values())
    assert len({a.relative_orbit for a in by_state["ascending"]}) == 1
    assert by_state["ascending"][0].relative_orbit != by_state["descending"][0].relative_orbit
    for track in by_state.values():
        gaps = {(b.time.date() - a.time.date()).days for a, b in zip(track, track[1:], strict=False)}
        assert gaps == {12}
    all_gaps = [(b.time - a.time).total_seconds() / 86400
                for a, b in zip(acqs, acqs[1:], strict=False)]
    assert max(all_gaps) <= 12 and np.mean(all_gaps) == pytest.approx(6, abs=0.5)
    assert any(a.nodata_side for a in acqs) and not all(a.nodata_side for a in acqs)
    assert {a.platform for a in by_state["descending"]} == {"SENTINEL-1B"}  # before 2021-12-23


def _acq(params, cloud: float, boa: bool = False, day: date = date(2019, 3, 10)):
    base = plan_s2_acquisitions(params)[0]
    t = base.time.replace(year=day.year, month=day.month, day=day.day)
    return replace(base, cloud_fraction=cloud, boa_offset=boa, time=t)


def test_s2_bands_resolution_dtype_and_boa_offset(land, params) -> None:
    clear = simulate_s2(land, _acq(params, 0.0), params.seed)
    shifted = simulate_s2(land, _acq(params, 0.0, boa=True), params.seed)
    h, w = land.shape
    for band in ("B02", "B03", "B04", "B08"):
        assert clear.bands[band].shape == (h, w) and clear.bands[band].dtype == np.uint16
    for band in ("B11", "B12"):
        assert clear.bands[band].shape == (h // 2, w // 2)
    assert clear.scl.shape == (h // 2, w // 2) and clear.scl.dtype == np.uint8
    diff = shifted.bands["B08"].astype(int) - clear.bands["B08"].astype(int)
    assert np.median(diff) == BOA_ADD_OFFSET
    assert clear.percentages["eo:cloud_cover"] == 0.0
    # Plausible reflectance: water dark in NIR, vegetation bright in NIR.
    nir = clear.bands["B08"] / 1e4
    assert nir[land.landcover == WATER].mean() < 0.06
    assert nir[land.landcover == VEGETATION].mean() > 0.25


def test_s2_clouds_are_flagged_and_shadows_are_offset(land, params) -> None:
    overcast = simulate_s2(land, _acq(params, 1.0), params.seed)
    assert overcast.percentages["eo:cloud_cover"] > 95
    assert overcast.bands["B02"].mean() > 3000  # bright cloud tops
    shadows_seen = 0
    for i, cover in enumerate((0.3, 0.4, 0.5, 0.35)):
        acq = replace(_acq(params, cover), index=100 + i)
        scene = simulate_s2(land, acq, params.seed)
        cloud = np.isin(scene.scl, (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH))
        assert 0.1 < cloud.mean() < 0.8
        shadow = scene.scl == SCL_SHADOW
        assert not (shadow & cloud).any()
        shadows_seen += int(shadow.sum())
        # Coherent clouds: a cloudy pixel's neighbour is mostly cloudy too.
        assert (cloud[:, 1:] == cloud[:, :-1]).mean() > 0.9
    assert shadows_seen > 0


def test_s1_backscatter_levels_speckle_and_geometry(land, params) -> None:
    acqs = plan_s1_acquisitions(params)
    asc = next(a for a in acqs if a.orbit_state == "ascending" and not a.nodata_side)
    desc = next(a for a in acqs if a.orbit_state == "descending" and not a.nodata_side)
    a, d = simulate_s1(land, asc, params.seed), simulate_s1(land, desc, params.seed)
    assert a.vv.dtype == np.float32 and a.vv.shape == land.shape
    lc = land.landcover
    med = {c: float(np.median(a.vv[lc == c])) for c in (WATER, VEGETATION, BUILT)}
    assert med[BUILT] > 2 * med[VEGETATION] > 4 * med[WATER]
    assert 10 * np.log10(med[BUILT]) > -10 and 10 * np.log10(med[WATER]) < -17
    assert float(np.median(a.vh[lc == VEGETATION])) < med[VEGETATION]
    # Speckle: equivalent number of looks of a homogeneous target is about 4.5.
    ratio = a.vv[lc == WATER] / d.vv[lc == WATER]  # removes the fixed texture
    # var(x/y) for two independent gamma(L) speckles -> estimate L from the log-ratio.
    from scipy.special import polygamma
    var_log = float(np.var(np.log(ratio)))
    enl = np.linspace(1, 10, 901)
    estimate = enl[np.argmin(np.abs(2 * polygamma(1, enl) - var_log))]
    assert 3.8 < estimate < 5.5
    # Built-up brightness depends on the orbit's look direction (double bounce).
    built = lc == BUILT
    assert np.corrcoef(np.log(a.vv[built]), np.log(d.vv[built]))[0, 1] < 0.9


def test_s1_nodata_strip(land, params) -> None:
    acq = next(a for a in plan_s1_acquisitions(params) if a.nodata_side)
    scene = simulate_s1(land, acq, params.seed)
    empty = np.isnan(scene.vv)
    assert 0.01 < empty.mean() < 0.5
    col = 0 if acq.nodata_side == "west" else -1
    assert empty[:, col].all() and not empty[:, -1 - col].any()


def test_scenes_are_deterministic(land, params) -> None:
    acq = _acq(params, 0.5)
    a, b = simulate_s2(land, acq, params.seed), simulate_s2(land, acq, params.seed)
    np.testing.assert_array_equal(a.bands["B04"], b.bands["B04"])


def test_float_precision_is_kept_well_below_speckle() -> None:
    x = np.random.default_rng(0).gamma(4.5, 0.02, 10000).astype(np.float32)
    x[0] = np.nan
    y = keep_float_precision(x)
    assert np.isnan(y[0])
    assert np.nanmax(np.abs(y[1:] / x[1:] - 1)) < 2**-7


def test_mgrs_tiles_match_real_earth_search_ids() -> None:
    path = DATA / "stac" / "earth-search__sentinel-2-l2a__items.json"
    if not path.exists():
        pytest.skip(f"real STAC data not found at {path}")
    for f in json.loads(path.read_text())["features"]:
        t = f["assets"]["red"]["proj:transform"]
        lat = (f["bbox"][1] + f["bbox"][3]) / 2
        zone, band, square = mgrs_tile(f["properties"]["proj:epsg"], lat,
                                       t[2] + 54900, t[5] - 54900)
        assert f["id"].split("_")[1] == f"{zone}{band}{square}"
