"""Which scenes an alert revision's chips show, and the timeline with the site's log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from shapely.geometry import box, mapping

from monitor.domain.events import SceneData
from monitor.domain.grid import CityGrid
from monitor.domain.records import StoredAlert
from monitor.domain.scenes import scene_from_item
from monitor.domain.site_log import entries_as_dicts
from monitor.domain.vocabulary import date_to_day
from monitor.reporting.chips import choose_chip_scenes, observation_timeline

T0 = datetime(2024, 1, 1, 10, tzinfo=UTC)
AOI = box(17.90, 59.28, 17.91, 59.285)


def scene(n: int, modality: str = "s2") -> SceneData:
    keys = ({b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}
            if modality == "s2" else {"vv": "vv", "vh": "vh"})
    item = {"type": "Feature", "id": f"{modality.upper()}_{n:03d}",
            "collection": "sentinel-2-l2a" if modality == "s2" else "sentinel-1-rtc",
            "geometry": dict(box(17.0, 59.0, 19.0, 60.0).__geo_interface__),
            "properties": {"datetime": (T0 + timedelta(days=5 * n)).isoformat(),
                           "eo:cloud_cover": 10.0, "sat:orbit_state": "ascending",
                           "sat:relative_orbit": 102, "sar:instrument_mode": "IW",
                           "sar:polarizations": ["VV", "VH"]},
            "assets": {k: {"href": f"https://data.example/{n}/{k}.tif"} for k in keys}}
    return scene_from_item(item, city_id="c", provider="p", stac_api="https://stac.example",
                           collection=item["collection"], modality=modality,  # type: ignore[arg-type]
                           asset_keys=keys)


class Reader:
    """Every scene clear over the chip, except those named cloudy."""

    def __init__(self, cloudy: frozenset[str] = frozenset()) -> None:
        self.cloudy = cloudy

    def read_s2(self, s: SceneData, grid: CityGrid, bands: Any = ()) -> Any:
        clear = s.item_id not in self.cloudy
        return SimpleNamespace(values=np.zeros((3, *grid.shape), np.float32),
                               valid=np.full(grid.shape, clear))


def alert(**kw: Any) -> StoredAlert:
    base: dict[str, Any] = dict(id="a", city_id="c", status="provisional",
                                geometry=mapping(AOI), area_m2=2000.0,
                                first_detected=(T0 + timedelta(days=50)).date(),
                                change_date=(T0 + timedelta(days=40)).date(),
                                confidence=0.7, model_version="m", revision=3, site_id="4")
    return StoredAlert(**{**base, **kw})


SCENES = [scene(n) for n in range(0, 30)] + [scene(n, "s1") for n in range(0, 30, 3)]


def chips(a: StoredAlert, moved_by: tuple[str, ...], cloudy: frozenset[str] = frozenset()
          ) -> tuple[str | None, str | None]:
    from monitor.reporting.chips import chip_grid

    before, after = choose_chip_scenes(a, SCENES, Reader(cloudy), chip_grid(a.geometry),
                                       moved_by)
    return (before.scene.item_id if before else None, after.scene.item_id if after else None)


def test_a_revision_shows_the_scene_that_moved_it() -> None:
    a = alert()
    # before: the last clear S2 scene before the change date (day 40 = scene 8)
    assert chips(a, ("S2_014",)) == ("S2_007", "S2_014")
    # the moving scene cloudy over the chip: the nearest clear one before it
    assert chips(a, ("S2_014",), cloudy=frozenset({"S2_014", "S2_013"})) == ("S2_007", "S2_012")
    # moved by radar: the nearest clear S2 scene at or before it (after the change)
    assert chips(a, ("S1_015",)) == ("S2_007", "S2_015")
    # nothing recorded: the first clear S2 scene from the first detection on (day 50)
    assert chips(a, ()) == ("S2_007", "S2_010")


def test_the_timeline_carries_what_each_scene_said_about_the_site() -> None:
    a = alert()
    day = lambda n: date_to_day((T0 + timedelta(days=5 * n)).date())  # noqa: E731
    log = entries_as_dicts([[day(10), "s2", 20, 20, 0.91, 2.5, "first"],
                            [day(12), "s1:102", 20, 18, 0.7, 3.1, "first"],
                            [day(14), "s2", 20, 5, 0.88, 4.6, "provisional"]])
    rows = {r["item_id"]: r for r in observation_timeline(a, SCENES, site_log=log)}
    assert (rows["S2_010"]["p_change"], rows["S2_010"]["evidence"]) == (0.91, 2.5)
    assert rows["S1_012"]["p_change"] == 0.7 and rows["S1_012"]["clear_share"] == 0.9
    assert rows["S2_014"]["clear_share"] == 0.25
    assert rows["S2_014"]["site_status"] == "provisional"
    # scenes the site did not log (before it existed) say nothing rather than guess
    assert rows["S2_009"]["p_change"] is None and rows["S2_009"]["evidence"] is None
    assert date.fromisoformat(min(rows[k]["date"] for k in rows)) <= a.change_date
