"""Raster change state -> ChangeRegion polygons (lon/lat), with dates and confidence."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from monitor.adapters.vectorise import EPOCH, extract_regions, extract_regions_from_state
from monitor.domain.grid import CityGrid
from monitor.errors import AlertError

GRID = CityGrid(epsg=32633, origin_x=500_000.0, origin_y=6_600_000.0, width=40, height=30)


def day(d: date) -> int:
    return (d - EPOCH).days


def empty_state() -> dict[str, np.ndarray]:
    return {"status": np.zeros(GRID.shape, np.uint8),
            "first_day": np.zeros(GRID.shape, np.uint16),
            "confirm_day": np.zeros(GRID.shape, np.uint16),
            "change_day": np.zeros(GRID.shape, np.uint16)}


def regions_of(state: dict[str, np.ndarray], **kw: object) -> list:
    return extract_regions(state["status"], GRID, first_day=state["first_day"],
                           confirm_day=state["confirm_day"], change_day=state["change_day"],
                           model_version="m1", city_id="c", **kw)


def test_no_change_gives_no_regions() -> None:
    assert regions_of(empty_state()) == []


def test_two_patches_with_dates_status_area_and_lonlat_polygons() -> None:
    s = empty_state()
    # Patch A: 5x4 pixels, confirmed in part, rows 2..6, cols 3..6.
    s["status"][2:7, 3:7] = 2
    s["status"][2:4, 3:7] = 3
    s["first_day"][2:7, 3:7] = day(date(2024, 3, 10))
    s["first_day"][6, 6] = day(date(2024, 3, 1))              # the earliest pixel
    s["confirm_day"][2:4, 3:7] = day(date(2024, 4, 2))
    s["change_day"][2:7, 3:7] = day(date(2024, 2, 20))
    s["change_day"][2, 3] = day(date(2023, 1, 1))             # one outlier: median ignores it
    # Patch B: diagonal pair (8-connected -> one region), only 'first'.
    s["status"][20, 30] = s["status"][21, 31] = 1
    s["first_day"][20, 30] = s["first_day"][21, 31] = day(date(2024, 5, 5))
    regions = regions_of(s)
    assert len(regions) == 2
    a, b = regions                                            # sorted by anchor pixel
    assert (a.status, a.n_pixels, a.area_m2) == ("confirmed", 20, 2000.0)
    assert a.first_detected == date(2024, 3, 1)
    assert a.confirmed == date(2024, 4, 2)
    assert a.change_date == date(2024, 2, 20)
    assert a.confidence == pytest.approx((8 * 0.95 + 12 * 0.75) / 20)
    assert (b.status, b.n_pixels, b.confirmed) == ("first", 2, None)
    assert b.geometry["type"] == "MultiPolygon"               # corner-touching pixels
    # Geometry: lon/lat, and back in UTM it is exactly the pixel block.
    geom = shape(a.geometry)
    assert 14 < geom.centroid.x < 16 and 59 < geom.centroid.y < 60
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True).transform
    utm = shapely.transform(geom, lambda x, y: to_utm(x, y), interleaved=False)
    assert utm.area == pytest.approx(2000.0, rel=1e-6)
    left, bottom, right, top = utm.bounds
    assert left == pytest.approx(500_030.0, abs=1e-3) and top == pytest.approx(6_599_980.0, abs=1e-3)
    assert right - left == pytest.approx(40.0, abs=1e-3) and top - bottom == pytest.approx(50.0, abs=1e-3)


def test_min_pixels_confidence_array_retracted_and_stable_ids() -> None:
    s = empty_state()
    s["status"][0, 0] = 1
    s["first_day"][0, 0] = 100
    s["status"][10:13, 10:13] = 4                             # all retracted
    s["first_day"][10:13, 10:13] = 200
    conf = np.zeros(GRID.shape, np.float32)
    conf[10:13, 10:13] = 0.2
    regions = regions_of(s, min_pixels=2, confidence=conf)
    assert len(regions) == 1
    (r,) = regions
    assert r.status == "retracted" and r.n_pixels == 9
    assert r.confidence == pytest.approx(0.2)
    again = regions_of(s, min_pixels=2, confidence=conf)
    assert again[0].region_id == r.region_id


def test_state_object_and_shape_mismatch() -> None:
    s = empty_state()
    s["status"][5:8, 5:8] = 3
    s["first_day"][5:8, 5:8] = 10
    s["confirm_day"][5:8, 5:8] = 20

    class State:
        grid = GRID
        status, first_day = s["status"], s["first_day"]
        confirm_day, change_day = s["confirm_day"], s["change_day"]

    (r,) = extract_regions_from_state(State(), model_version="m1", city_id="c")
    assert r.confirmed == date(2014, 1, 21) and r.change_date is None
    with pytest.raises(AlertError, match="shape"):
        extract_regions(s["status"][:5], GRID, first_day=s["first_day"],
                        confirm_day=s["confirm_day"], change_day=s["change_day"],
                        model_version="m1")


def test_retracted_pixels_do_not_chain_two_sites() -> None:
    from datetime import date

    from monitor.adapters.vectorise import extract_regions
    from monitor.domain.grid import CityGrid

    grid = CityGrid(epsg=32631, origin_x=500000.0, origin_y=5000000.0, width=12, height=4)
    status = np.zeros(grid.shape, dtype=np.uint8)
    status[1:3, 0:3] = 3          # site A, confirmed
    status[1:3, 3:9] = 4          # a band of retracted speckle touching both
    status[1:3, 9:12] = 2         # site B, provisional
    day = np.where(status > 0, 3000, 0).astype(np.uint16)
    regions = extract_regions(status, grid, first_day=day, confirm_day=np.where(status == 3, 3010, 0),
                              change_day=day, model_version="m", city_id="c")
    assert sorted(r.status for r in regions) == ["confirmed", "provisional", "retracted"]
    assert {r.n_pixels for r in regions} == {6, 12}
    assert all(r.first_detected > date(2014, 1, 1) for r in regions)
