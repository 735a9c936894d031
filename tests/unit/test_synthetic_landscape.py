"""The synthetic landscape: coherent land cover, sites with known dates, confusers that return."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from monitor.synthetic.landscape import (
    BUILT,
    CROPLAND,
    PHASE_BEFORE,
    PHASE_BUILT,
    PHASE_CLEARED,
    SEASONAL_WATER,
    WATER,
    crop_vigour,
    from_epoch_days,
    generate_landscape,
    smooth_noise,
    surface_at,
)
from monitor.synthetic.params import ArchiveParams


@pytest.fixture(scope="module")
def params() -> ArchiveParams:
    return ArchiveParams(size_km=1.5, start=date(2019, 1, 1), end=date(2020, 12, 31), n_sites=6)


@pytest.fixture(scope="module")
def land(params):
    return generate_landscape(params.city_grid(), params.start, params.end,
                              params.resolved_n_sites(), params.seed, params.wet_season_peak_doy)


def test_smooth_noise_is_normalised_coherent_and_deterministic() -> None:
    a = smooth_noise(np.random.default_rng(1), (120, 90), cell=15)
    b = smooth_noise(np.random.default_rng(1), (120, 90), cell=15)
    assert a.shape == (120, 90) and a.dtype == np.float32
    assert abs(float(a.mean())) < 1e-5 and float(a.std()) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_array_equal(a, b)
    neighbour_corr = np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]
    assert neighbour_corr > 0.9  # spatially coherent, not white noise


def test_grid_is_utm_10m_and_20m_aligned(params) -> None:
    grid = params.city_grid()
    assert grid.epsg == 32631 and grid.pixel_size == 10.0 and grid.shape == (150, 150)
    assert grid.origin_x % 20 == 0 and grid.origin_y % 20 == 0


def test_landcover_has_every_class_in_coherent_patches(land) -> None:
    counts = np.bincount(land.landcover.ravel(), minlength=7)
    assert all(counts[c] > 0 for c in (1, 2, 3, 4, 6)), counts
    lc = land.landcover
    same_as_right = float((lc[:, 1:] == lc[:, :-1]).mean())
    assert same_as_right > 0.85  # patches, not salt and pepper


def test_sites_have_plausible_size_dates_and_footprints(land, params) -> None:
    assert len(land.sites) == 6
    grid = params.city_grid()
    for site in land.sites:
        pixels = land.site_labels == site.site_id
        assert pixels.sum() == site.n_pixels >= 5
        assert 0.05 <= site.area_ha <= 5.5
        assert params.start < site.start < site.built
        assert (land.change_date[pixels] == (site.start - date(1970, 1, 1)).days).all()
        built = land.built_date[pixels]
        assert (built > land.change_date[pixels]).all()
        assert from_epoch_days(int(built.max())) <= site.built
        # Sites never sit on water or on the existing city.
        assert not np.isin(land.landcover[pixels], (WATER, SEASONAL_WATER, BUILT)).any()
        assert site.polygon_utm.within(__import__("shapely").geometry.box(*grid.bounds))
    assert ((land.change_date > 0) == (land.site_labels > 0)).all()


def test_landscape_is_deterministic_by_seed(params) -> None:
    g = params.city_grid()
    a = generate_landscape(g, params.start, params.end, 4, seed=3)
    b = generate_landscape(g, params.start, params.end, 4, seed=3)
    c = generate_landscape(g, params.start, params.end, 4, seed=4)
    np.testing.assert_array_equal(a.landcover, b.landcover)
    np.testing.assert_array_equal(a.change_date, b.change_date)
    assert not np.array_equal(a.landcover, c.landcover)


def test_site_goes_through_clearing_then_built_up(land, params) -> None:
    site = land.sites[0]
    pixels = land.site_labels == site.site_id
    before = surface_at(land, site.start - timedelta(days=1), params.seed)
    during = surface_at(land, site.start + timedelta(days=5), params.seed)
    after = surface_at(land, site.built + timedelta(days=1), params.seed)
    assert (before.phase[pixels] == PHASE_BEFORE).all()
    assert (during.phase[pixels] == PHASE_CLEARED).all()
    assert (after.phase[pixels] == PHASE_BUILT).all()
    assert (after.phase[~pixels & (land.site_labels == 0)] == PHASE_BEFORE).all()


def test_crops_are_harvested_and_grow_back(land) -> None:
    assert (land.landcover == CROPLAND).any()
    series = np.stack([crop_vigour(land, date(2019, 1, 1) + timedelta(days=d))
                       for d in range(0, 730, 5)])
    # Every parcel is green at some time and bare at another, in both years.
    for year in (slice(0, 73), slice(73, 146)):
        assert (series[year].max(axis=0) > 0.7).all()
        assert (series[year].min(axis=0) < 0.25).all()


def test_seasonal_water_comes_and_goes_but_permanent_water_stays(land, params) -> None:
    days = [date(2019, 1, 1) + timedelta(days=d) for d in range(0, 730, 10)]
    water = np.stack([surface_at(land, d, params.seed).water for d in days])
    permanent = land.landcover == WATER
    seasonal = land.landcover == SEASONAL_WATER
    assert water[:, permanent].all()
    frac = water[:, seasonal].mean(axis=1)
    assert frac.max() > 0.6 and frac.min() < 0.4  # flooded in the wet season, dry otherwise
    assert not water[:, land.landcover == BUILT].any()


def test_natural_vegetation_follows_the_seasons(land, params) -> None:
    veg = land.landcover == 3
    wet = surface_at(land, date(2019, 8, 15), params.seed).vigour[veg].mean()
    dry = surface_at(land, date(2019, 2, 15), params.seed).vigour[veg].mean()
    assert wet > dry + 0.2
