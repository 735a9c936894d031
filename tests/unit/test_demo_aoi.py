"""The demo's city outline is the generated archive's, everywhere: config/demo.yaml holds
the default archive's footprint, the run's serve.yaml names no city (the database has the
archive's own), and serving the API with either keeps an outline that covers the alerts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient
from shapely.geometry import shape

from monitor.adapters.database import Database
from monitor.domain.city import City
from monitor.domain.grid import CityGrid
from monitor.pipeline.demo import DEMO_CITY_ID, write_serve_config
from monitor.pipeline.runtime import build_runtime
from monitor.settings import CONFIG_DIR, load_settings
from monitor.synthetic.params import ArchiveParams
from services.api import create_app


def _default_archive() -> ArchiveParams:
    demo = load_settings(CONFIG_DIR / "demo.yaml").demo
    return ArchiveParams(seed=int(demo["seed"]), size_km=float(demo["size_km"]),
                         start=date.fromisoformat(str(demo["start"])),
                         end=date.fromisoformat(str(demo["end"])))


def _iou(a: object, b: object) -> float:
    a, b = shape(a) if isinstance(a, dict) else a, shape(b) if isinstance(b, dict) else b
    return float(a.intersection(b).area / a.union(b).area)  # type: ignore[union-attr]


def test_demo_config_outline_is_the_default_archive_footprint() -> None:
    params = _default_archive()
    config_city = load_settings(CONFIG_DIR / "demo.yaml").cities[0]
    assert config_city.id == DEMO_CITY_ID
    assert _iou(config_city.aoi(), params.aoi_wgs84()) > 0.999
    grid, archive_grid = CityGrid.from_aoi(config_city.aoi()), params.city_grid()
    assert grid.epsg == archive_grid.epsg
    assert abs(grid.origin_x - archive_grid.origin_x) <= 10
    assert abs(grid.origin_y - archive_grid.origin_y) <= 10
    assert abs(grid.width - archive_grid.width) <= 1


def _demo_database(tmp_path: Path, params: ArchiveParams) -> tuple[str, Path]:
    """A run folder whose database holds the demo city as the demo registers it."""
    run = tmp_path / "report-run"
    run.mkdir()
    url = f"sqlite:///{run / 'urban-monitor.db'}"
    settings = load_settings(CONFIG_DIR / "demo.yaml", database={"url": url},
                             state={"url": str(run / "state")})
    city = City(DEMO_CITY_ID, "Demo City", params.aoi_wgs84(), params.city_grid(),
                population={2019: 250000, 2021: 275000})
    build_runtime(settings, cities={DEMO_CITY_ID: city}).close()
    return url, run


def _served_outline(settings: object) -> dict[str, object]:
    runtime = build_runtime(settings)  # what `serve api` does first: register the cities
    try:
        app = create_app(runtime.settings, runtime.db)
        answer = TestClient(app).get(f"/collections/cities/items/{DEMO_CITY_ID}")
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]
    finally:
        runtime.close()


def test_serving_the_run_keeps_the_archive_outline(tmp_path: Path) -> None:
    params = _default_archive()
    url, run = _demo_database(tmp_path, params)
    serve = write_serve_config(run)
    settings = load_settings(serve)
    assert settings.cities == [] and settings.database.url == url
    assert settings.state.url == str(run.resolve() / "state")
    feature = _served_outline(settings)
    assert _iou(feature["geometry"], params.aoi_wgs84()) > 0.99999
    assert "250000" in str(feature["properties"]["population"])
    # the database row keeps the archive's grid
    db = Database(url)
    try:
        row = next(c for c in db.cities() if c.id == DEMO_CITY_ID)
        assert row.grid == params.city_grid().to_dict()
    finally:
        db.dispose()


def test_serving_with_the_demo_config_keeps_an_outline_over_the_alerts(tmp_path: Path) -> None:
    params = _default_archive()
    url, run = _demo_database(tmp_path, params)
    settings = load_settings(CONFIG_DIR / "demo.yaml", database={"url": url},
                             state={"url": str(run / "state")})
    feature = _served_outline(settings)
    assert _iou(feature["geometry"], params.aoi_wgs84()) > 0.999
