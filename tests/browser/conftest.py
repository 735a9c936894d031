"""Browser tests: Debian's chromium (bash docker/browser-deps.sh installs it) driven by the
Playwright Python package through ``executable_path`` (no browser download), against the
real API (services.api.create_app + the dashboard routes) served by uvicorn on a free
port, over a SQLite database filled with demo-like alerts."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import mapping

from tests.browser.demo_data import (
    CITY_ID,
    CITY_NAME,
    END,
    START,
    DemoCity,
    alert_record,
    build_demo_city,
    register_scenes,
    scene_days,
    write_scenes,
)

REPO = Path(__file__).resolve().parents[2]
# Screenshots of every test (gitignored; CI keeps them as artifacts).
ARTIFACTS = REPO / "var" / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
EMPTY_CITY_ID = "emptyville"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium on this machine: run `bash docker/browser-deps.sh`")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def demo_city() -> DemoCity:
    return build_demo_city()


@pytest.fixture(scope="session")
def demo_scenes(demo_city: DemoCity, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Real S2 GeoTIFFs every 45 days over the demo city (for the chips)."""
    return write_scenes(demo_city, tmp_path_factory.mktemp("scenes"), scene_days())


class StateStore:
    """The API's state-store port (``load(city_id)``) over the demo states in memory."""

    def __init__(self, states: dict[str, Any]) -> None:
        self.states = states

    def load(self, city_id: str) -> Any:
        return self.states.get(city_id)


def _published_layers(tmp_path: Path, city: DemoCity) -> Any:
    """A real layer store holding one published layer set (COGs) of the demo city."""
    import numpy as np

    from monitor.adapters.layer_store import LayerStore
    from monitor.products.layers import LAYER_NAMES, LayerSet

    state = city.state
    zeros = np.zeros(state.status.shape, np.uint16)
    arrays = {"status": state.status, "first_detection_date": state.first_day,
              "confirmation_date": zeros, "change_date": state.change_day,
              "confidence": np.zeros(state.status.shape, np.uint8),
              "clear_count": state.s2_count, "last_clear_date": zeros}
    store = LayerStore(str(tmp_path / "layers"))
    store.write(LayerSet(city_id=CITY_ID, version=7, grid=city.grid,
                         arrays={k: arrays[k] for k in LAYER_NAMES}, start=START, end=END,
                         last_scene_id=None, model_version="test"))
    return store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    def __init__(self, url: str, db: Any, city: DemoCity) -> None:
        self.url = url
        self.db = db
        self.city = city


@pytest.fixture()
def api_server(tmp_path: Path, demo_city: DemoCity, demo_scenes: list[Any]
               ) -> Iterator[ApiServer]:
    import uvicorn

    from monitor.adapters.database import Database
    from monitor.settings import load_settings
    from services.api import create_app
    from services.api.dashboard import mount_dashboard

    db = Database(f"sqlite:///{tmp_path / 'alerts.db'}")
    db.init_schema()
    for alert in demo_city.alerts:
        db.save_alert(alert_record(alert))
    register_scenes(db, demo_scenes)
    west, south, east, north = demo_city.aoi.bounds
    settings = load_settings(None, cities=[
        {"id": CITY_ID, "name": CITY_NAME, "country": "Testland", "geometry": mapping(demo_city.aoi),
         "population": {2019: 48000, 2022: 51000}, "built_up_km2": {2019: 2.4}},
        {"id": EMPTY_CITY_ID, "name": "Emptyville", "bbox": [west + 1, south, east + 1, north]},
    ], api={"sse_poll_s": 0.2},
        # the scenes' provider, local like the demo's: its assets are local COGs, which
        # the chip reader opens only for a provider configured as local
        providers={"synthetic": {"url": "http://127.0.0.1:0/", "signing": "none",
                                 "collections": {"sentinel-2-l2a": {"modality": "s2", "assets": {
                                     b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}}}}})
    store = StateStore({CITY_ID: demo_city.state})
    app = create_app(settings, db, store, layers=_published_layers(tmp_path, demo_city))
    if not any(getattr(r, "path", None) == "/dashboard" for r in app.routes):
        # services.api does not mount the dashboard itself (yet): do what it would do.
        def load_state(city_id: str) -> Any:
            from starlette.exceptions import HTTPException

            state = store.load(city_id)
            if state is None:
                raise HTTPException(404, f"no change state for city '{city_id}' yet")
            return state

        mount_dashboard(app, load_state)
    # A free port can be taken by another process between the probe and the bind: retry.
    for _attempt in range(3):
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.started:
            break
        server.should_exit = True
        thread.join(timeout=5)
    else:
        raise RuntimeError("the API did not start on a free local port in 3 attempts")
    yield ApiServer(f"http://127.0.0.1:{port}", db, demo_city)
    server.should_exit = True
    thread.join(timeout=10)
    db.dispose()
