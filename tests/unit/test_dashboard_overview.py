"""The dashboard's pure parts: the city overview (monthly series from the city's real
start, SDG 11.3.1 without the baseline artefact, its inputs), the download filters, and
the GeoPackage writer (read back by sqlite3, and by GDAL's ogrinfo when installed)."""

from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import shapely
from shapely.geometry import box, mapping

from monitor.domain.grid import CityGrid
from monitor.domain.records import StoredAlert
from monitor.domain.vocabulary import date_to_day
from monitor.errors import RequestError
from monitor.reporting.chips import chip_dates, chip_grid, observation_timeline
from monitor.reporting.filters import AlertFilter, parse_filter
from monitor.reporting.geopackage import alerts_geopackage, geometry_blob
from monitor.reporting.overview import city_overview, monthly_series, state_period

SQUARE = mapping(box(3.36, 6.51, 3.362, 6.512))


def _alert(aid: str, status: str, *, first: date, change: date | None = None,
           confirmed: date | None = None, area: float = 10_000.0, confidence: float = 0.8,
           retracted: date | None = None) -> StoredAlert:
    return StoredAlert(id=aid, city_id="c", status=status, geometry=SQUARE, area_m2=area,
                       first_detected=first, confidence=confidence, model_version="m1",
                       confirmed=confirmed, change_date=change, retracted=retracted,
                       scene_ids=("S2_a", "S2_b"))


ALERTS = [
    # a site whose estimated change falls in the baseline period: not new construction
    _alert("a", "confirmed", first=date(2019, 2, 10), change=date(2019, 1, 20),
           confirmed=date(2019, 3, 20), area=500_000.0),
    _alert("b", "confirmed", first=date(2019, 6, 1), change=date(2019, 5, 20),
           confirmed=date(2019, 7, 10), area=20_000.0),
    _alert("c", "confirmed", first=date(2020, 2, 1), change=date(2020, 1, 15),
           confirmed=date(2020, 3, 1), area=30_000.0, confidence=0.95),
    _alert("d", "provisional", first=date(2020, 5, 1), change=date(2020, 4, 20), area=5_000.0,
           confidence=0.6),
    _alert("e", "retracted", first=date(2019, 8, 1), change=date(2019, 7, 25),
           retracted=date(2019, 11, 1), area=8_000.0, confidence=0.3),
]


def test_state_period_is_first_scene_baseline_end_and_latest_day() -> None:
    state = SimpleNamespace(first_stream_day={"s2": date_to_day(date(2019, 1, 3)),
                                              "s1:87": date_to_day(date(2019, 1, 5))},
                            last_day={"s2": date_to_day(date(2020, 6, 28)),
                                      "s1:87": date_to_day(date(2020, 6, 30))},
                            params=SimpleNamespace(baseline_days=90))
    assert state_period(state) == (date(2019, 1, 3), date(2019, 4, 3), date(2020, 6, 30))
    assert state_period(None) == (None, None, None)


def test_overview_starts_at_the_city_start_and_leaves_baseline_sites_out() -> None:
    out = city_overview(alerts=ALERTS, population={2019: 100_000, 2021: 110_000},
                        start=date(2019, 1, 3), baseline_end=date(2019, 4, 3),
                        latest=date(2020, 6, 30), built_up_latest_m2=2_050_000.0)
    months = out["months"]
    assert months[0]["month"] == "2019-01" and months[-1]["month"] == "2020-06"
    assert len(months) == 18
    # newly confirmed per month, by confirmation date (the baseline site too: it happened)
    by_month = {m["month"]: m for m in months}
    assert by_month["2019-03"]["new_confirmed_m2"] == 500_000.0
    assert by_month["2019-07"]["new_confirmed_sites"] == 1
    assert sum(m["new_confirmed_sites"] for m in months) == 3
    # built-up: Urb_t1 = latest estimate - confirmed construction after t1 (b, c), flat
    # over the baseline (no jump from site a), then + b in May 2019, + c in Jan 2020
    assert out["baseline_sites"] == {"sites": 1, "area_m2": 500_000.0}
    urb_t1 = 2_050_000.0 - 50_000.0
    assert by_month["2019-04"]["built_up_m2"] == urb_t1
    assert by_month["2019-05"]["built_up_m2"] == urb_t1 + 20_000.0
    assert by_month["2020-01"]["built_up_m2"] == urb_t1 + 50_000.0
    assert months[-1]["built_up_m2"] == 2_050_000.0
    sdg = out["sdg_11_3_1"]
    assert sdg["available"] is True
    inputs = sdg["inputs"]
    assert inputs["t1"] == "2019-04-03" and inputs["t2"] == "2020-06-30"
    assert inputs["urb_t1_m2"] == urb_t1 and inputs["added_sites"] == 2
    assert "index rule" in inputs["urb_t1_source"]
    years = sdg["years"]
    assert sdg["lcr"] == pytest.approx(np.log(2_050_000 / urb_t1) / years, rel=1e-3)
    assert sdg["ratio"] == pytest.approx(sdg["lcr"] / sdg["pgr"])
    assert out["alerts"]["confirmed"] == 3 and out["alerts"]["retracted"] == 1


def test_overview_prefers_a_configured_baseline_and_says_why_sdg_is_missing() -> None:
    out = city_overview(alerts=ALERTS, population={2019: 100_000, 2021: 110_000},
                        built_up_km2={2019: 4.0}, start=date(2019, 1, 3),
                        baseline_end=date(2019, 4, 3), latest=date(2020, 6, 30))
    assert out["sdg_11_3_1"]["inputs"]["urb_t1_m2"] == 4_000_000.0
    assert out["sdg_11_3_1"]["inputs"]["urb_t1_source"] == "configured built_up_km2 for 2019"
    no_pop = city_overview(alerts=ALERTS, population={}, start=date(2019, 1, 3),
                           baseline_end=date(2019, 4, 3), latest=date(2020, 6, 30),
                           built_up_latest_m2=2_050_000.0)
    assert no_pop["sdg_11_3_1"]["available"] is False
    assert "population" in no_pop["sdg_11_3_1"]["reason"]
    empty = city_overview(alerts=[], population={})
    assert empty["months"] == [] and empty["sdg_11_3_1"]["available"] is False


def test_monthly_series_without_baseline_has_no_built_up() -> None:
    rows = monthly_series(ALERTS, date(2019, 12, 5), date(2020, 3, 1), None, date(2019, 12, 5))
    assert [r["month"] for r in rows] == ["2019-12", "2020-01", "2020-02", "2020-03"]
    assert all(r["built_up_m2"] is None for r in rows)
    assert rows[3]["new_confirmed_m2"] == 30_000.0


def test_filters_select_like_the_page() -> None:
    default = parse_filter(status=None, date_field=None, date_from=None, date_to=None,
                           min_confidence=None, min_area_ha=None)
    assert [a.id for a in default.apply(ALERTS)] == ["a", "b", "c", "d"]
    everything = parse_filter(status="all", date_field=None, date_from=None, date_to=None,
                              min_confidence=None, min_area_ha=None)
    assert len(everything.apply(ALERTS)) == 5
    by_change = parse_filter(status="confirmed,retracted", date_field="change_date",
                             date_from="2019-05-01", date_to="2019-12-31",
                             min_confidence=0.2, min_area_ha=0.9)
    assert [a.id for a in by_change.apply(ALERTS)] == ["b"]
    # a confirmation range leaves out alerts that have no confirmation date
    confirmed_2020 = AlertFilter(statuses=("confirmed", "provisional"), date_field="confirmed",
                                 date_from=date(2020, 1, 1))
    assert [a.id for a in confirmed_2020.apply(ALERTS)] == ["c"]
    assert [a.id for a in AlertFilter(min_confidence=0.9).apply(ALERTS)] == ["c"]
    for bad in ({"status": "confirmed,nope"}, {"date_field": "updated"},
                {"date_from": "2020-13-01"}, {"date_from": "2021-01-01", "date_to": "2020-01-01"}):
        kwargs = {"status": None, "date_field": None, "date_from": None, "date_to": None,
                  "min_confidence": None, "min_area_ha": None, **bad}
        with pytest.raises(RequestError):
            parse_filter(**kwargs)


def _features() -> list[dict[str, object]]:
    multi = mapping(shapely.MultiPolygon([box(3.37, 6.52, 3.371, 6.521),
                                          box(3.372, 6.52, 3.373, 6.521)]))
    return [
        {"type": "Feature", "id": "a1", "geometry": SQUARE,
         "properties": {"alert_id": "a1", "status": "confirmed", "area_m2": 1234.5,
                        "first_detected": "2020-01-02", "confidence": 0.9, "revision": 3,
                        "scene_ids": ["S2_x", "S1_y"], "model_version": "m1"}},
        {"type": "Feature", "id": "a2", "geometry": multi,
         "properties": {"alert_id": "a2", "status": "provisional", "area_m2": 200.0,
                        "first_detected": "2020-02-03", "confidence": 0.5, "revision": 1,
                        "scene_ids": [], "model_version": "m1"}},
    ]


def test_geopackage_holds_the_alerts(tmp_path: Path) -> None:
    data = alerts_geopackage(_features())
    path = tmp_path / "alerts.gpkg"
    path.write_bytes(data)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 10300
        contents = conn.execute("SELECT table_name, data_type, srs_id, min_x, max_x "
                                "FROM gpkg_contents").fetchall()
        assert contents == [("alerts", "features", 4326, 3.36, 3.373)]
        rows = conn.execute("SELECT alert_id, status, revision, area_m2, scene_ids, geom "
                            "FROM alerts ORDER BY fid").fetchall()
    finally:
        conn.close()
    assert [r[:5] for r in rows] == [("a1", "confirmed", 3, 1234.5, "S2_x,S1_y"),
                                     ("a2", "provisional", 1, 200.0, "")]
    blob = rows[1][5]
    assert blob[:2] == b"GP" and struct.unpack("<i", blob[4:8])[0] == 4326
    geom = shapely.from_wkb(blob[8 + 32:])
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert struct.unpack("<4d", blob[8:40]) == (3.37, 3.373, 6.52, 6.521)
    if shutil.which("ogrinfo"):
        out = subprocess.run(["ogrinfo", "-al", "-so", str(path)], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "Feature Count: 2" in out and "Multi Polygon" in out
        assert "confidence: Real" in out and "first_detected: Date" in out


def test_geometry_blob_header() -> None:
    blob = geometry_blob(box(0, 0, 1, 2))
    assert blob[:4] == b"GP\x00\x03"
    assert shapely.from_wkb(blob[40:]).equals(box(0, 0, 1, 2))


def test_chip_grid_covers_the_alert_with_a_margin() -> None:
    grid = chip_grid(SQUARE)
    footprint = grid.footprint_wgs84()
    assert footprint.contains(shapely.geometry.shape(SQUARE))
    side_m = grid.width * grid.pixel_size
    assert 400 <= side_m <= 500  # a 220 m site: the 400 m minimum
    city = CityGrid.from_aoi(box(3.3, 6.5, 3.4, 6.6))
    assert grid.epsg == city.epsg and grid.pixel_size == city.pixel_size


def test_chip_dates_and_timeline() -> None:
    alert = ALERTS[2]
    assert chip_dates(alert) == (date(2020, 1, 15), date(2020, 3, 1))
    scenes = [SimpleNamespace(acquired=datetime.combine(d, time(10), tzinfo=UTC), modality=m,
                              item_id=i, collection="x", cloud_cover=None)
              for d, m, i in [(date(2019, 1, 1), "s2", "old"), (date(2019, 12, 1), "s1", "S1_z"),
                              (date(2020, 1, 20), "s2", "S2_a"), (date(2020, 9, 1), "s2", "late")]]
    rows = observation_timeline(alert, scenes)  # type: ignore[arg-type]
    assert [r["item_id"] for r in rows] == ["S1_z", "S2_a"]
    assert [r["moved_alert"] for r in rows] == [False, True]


def test_chip_reader_signs_scenes_of_signing_providers() -> None:
    """Chips read the scenes' assets as the worker does: signed for providers that sign."""
    from monitor.settings import load_settings
    from services.api.dashboard import SigningReader

    reader = SigningReader(load_settings(None))
    assert "planetary-computer" in reader.signers  # the default config's PC provider
    seen: list[tuple[str, tuple[str, ...]]] = []

    class FakeReader:
        def read_s2(self, scene: object, grid: object, bands: tuple[str, ...] = ()) -> str:
            seen.append((scene.assets["red"].href, bands))  # type: ignore[attr-defined]
            return "raster"

    class FakeSigner:
        def sign_scene(self, scene: object) -> object:
            assets = {k: a.model_copy(update={"href": a.href + "?sig=1"})
                      for k, a in scene.assets.items()}  # type: ignore[attr-defined]
            return scene.model_copy(update={"assets": assets})  # type: ignore[attr-defined]

    from monitor.domain.events import Asset, SceneData

    reader.reader = FakeReader()  # type: ignore[assignment]
    reader.signers = {"planetary-computer": FakeSigner()}  # type: ignore[dict-item]
    base = dict(city_id="c", stac_api="http://x/", collection="sentinel-2-l2a", item_id="i",
                modality="s2", acquired=datetime(2020, 1, 1, tzinfo=UTC), bbox=[0, 0, 1, 1],
                assets={"red": Asset(href="https://pc/red.tif", key="B04")})
    grid = chip_grid(SQUARE)
    assert reader.read_s2(SceneData(provider="planetary-computer", **base), grid) == "raster"
    reader.read_s2(SceneData(provider="earth-search", **base), grid)
    assert seen == [("https://pc/red.tif?sig=1", ("red", "green", "blue")),
                    ("https://pc/red.tif", ("red", "green", "blue"))]
