"""Site footprints traced in their own windows, as lon/lat polygons with the site's dates."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from shapely.geometry import shape

from monitor.adapters.vectorise import footprint_polygon, site_reports
from monitor.domain.grid import CityGrid, reproject_geometry
from monitor.domain.state import CityState, Observation, StateParams
from monitor.domain.vocabulary import date_to_day

GRID = CityGrid(epsg=32631, origin_x=500_000.0, origin_y=700_000.0, width=30, height=20)
PARAMS = StateParams(s2_llr_slope=1.0, s2_llr_offset=0.0, s2_reference_count=1, baseline_days=0,
                     h_first=1.5, h_provisional=4.0, h_confirm=6.0, n_confirm=3, site_min_px=4)
D0 = date(2024, 1, 1)


def test_a_footprint_is_pixel_exact_in_the_grid_and_reprojected_to_lon_lat() -> None:
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True  # 2 x 3 pixels inside a window whose corner is pixel (10, 20)
    poly = footprint_polygon(mask, GRID, 10, 20)
    assert poly is not None and poly.geom_type == "Polygon"
    utm = reproject_geometry(poly, 4326, GRID.epsg)
    left, bottom, right, top = utm.bounds
    assert abs(left - (GRID.origin_x + 21 * 10)) < 0.01 and abs(right - (GRID.origin_x + 24 * 10)) < 0.01
    assert abs(top - (GRID.origin_y - 11 * 10)) < 0.01 and abs(bottom - (GRID.origin_y - 13 * 10)) < 0.01
    assert abs(utm.area - 600.0) < 0.5
    assert footprint_polygon(np.zeros((2, 2), bool), GRID, 0, 0) is None


def test_site_reports_carry_the_sites_dates_area_and_geometry() -> None:
    state = CityState.create(GRID, PARAMS)
    values = np.full((6, *GRID.shape), 0.1, np.float32)
    valid = np.ones(GRID.shape, bool)
    p = np.full(GRID.shape, 0.01, np.float32)
    p[2:6, 3:8] = 0.99  # a 4 x 5 site
    reports = []
    for i in range(5):
        obs = Observation(f"s{i}", "s2", None, D0 + timedelta(days=5 * i), values, valid,
                          None if i == 0 else p)
        reports.append(state.apply(obs).sites)
    confirmed = [s for r in reports for s in r if s.status == "confirmed"]
    assert len(confirmed) == 1
    (site,) = site_reports(state, confirmed)
    assert site.site_id == "1" and site.n_pixels == 20 and site.area_m2 == 2000.0
    assert site.first_detected == D0 + timedelta(days=5)
    assert site.change_date == D0 + timedelta(days=5)
    assert site.confirmed is not None and site.confirmed >= site.first_detected
    geom = shape(site.geometry)
    assert abs(reproject_geometry(geom, 4326, GRID.epsg).area - 2000.0) < 1.0
    assert site.bbox == [round(v, 7) for v in geom.bounds]
    assert date_to_day(site.first_detected) > 0


def test_scored_alerts_take_the_last_revision_and_the_day_the_alert_first_warned() -> None:
    from types import SimpleNamespace

    from monitor.adapters.vectorise import scored_alerts
    from monitor.domain.vocabulary import UNIX_DAY_OFFSET

    poly = footprint_polygon(np.ones((3, 3), bool), GRID, 5, 5)
    assert poly is not None
    geom = dict(poly.__geo_interface__)

    def rev(n: int, status: str, scenes: list[str], confirmed: date | None = None) -> object:
        return SimpleNamespace(alert_id="a1", status=status, revision=n, geometry=geom,
                               change_date=D0, confirmed=confirmed, first_detected=D0,
                               scene_ids=scenes)

    days = {"s1": D0 + timedelta(days=5), "s2": D0 + timedelta(days=10),
            "s3": D0 + timedelta(days=20), "s4": D0 + timedelta(days=30)}
    # revisions out of order, as a topic may give them: first, provisional (two scenes),
    # provisional again, confirmed
    revisions = [rev(3, "provisional", ["s3"]), rev(1, "first", ["s1"]),
                 rev(4, "confirmed", ["s4"], confirmed=days["s4"]),
                 rev(2, "provisional", ["s1", "s2"])]
    (alert,) = scored_alerts(revisions, GRID, scene_days=days)
    epoch = date_to_day  # state days; ScoredAlert carries epoch days (1970)
    assert alert.status == "confirmed" and alert.ever_provisional
    assert alert.confirmed_day == epoch(days["s4"]) + UNIX_DAY_OFFSET
    assert alert.warning_day == epoch(days["s2"]) + UNIX_DAY_OFFSET  # revision 2's last scene
    assert alert.mask.sum() == 9 and alert.mask[6, 6]
    (unknown,) = scored_alerts(revisions, GRID)            # no scene dates: no warning day
    assert unknown.warning_day is None
    (never,) = scored_alerts([rev(1, "first", ["s1"])], GRID, scene_days=days)
    assert never.warning_day is None and not never.ever_provisional
