"""The dashboard page and the map layers it overlays, added to the API app.

    mount_dashboard(app, load_state)      # inside services.api.app.create_app

Adds:
- ``/dashboard/`` — the page (services/static: index.html, app.js, style.css, vendored
  Leaflet); ``/dashboard`` redirects there;
- ``/cities/{id}/maps/info`` — overlay bounds [west, south, east, north], whether the RGB
  and time-of-change layers exist, their legends (``monitor.reporting.maps.map_info``);
- ``/cities/{id}/maps/rgb.png`` — the latest clear-sky true-colour composite;
- ``/cities/{id}/maps/change-overlay.png`` — the time-of-change layer (first, provisional
  and confirmed pixels) resampled to Web Mercator so a Leaflet image overlay sits exactly
  on the map. (``change-date.png`` stays the grid-aligned map for GIS use.)

``load_state(city_id)`` returns the city's change state or raises the API's 404; the
layers are rendered off the event loop and cached per (city, layer, state version).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from threading import Lock
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from monitor.reporting.maps import map_info, render_change_png, render_rgb_png

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # services/static
_CACHE_SIZE = 16


class LayerCache:
    """Rendered layers by (city, layer, state version): a state changes version with each
    applied scene, so a new scene means a new image and an old one is never served."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, Any], Any] = OrderedDict()
        self._lock = Lock()

    def get_or_render(self, key: tuple[str, str, Any], render: Callable[[], Any]) -> Any:
        if key[2] is not None:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
        value = render()
        if key[2] is not None:
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
        return value


def mount_dashboard(app: FastAPI, load_state: Callable[[str], Any],
                    static_dir: Path = STATIC_DIR) -> None:
    """Serve the dashboard page and its map-layer routes on ``app``."""
    app.router.routes.extend(dashboard_router(load_state).routes)  # see app.add_routes
    app.mount("/dashboard", StaticFiles(directory=static_dir, html=True), name="dashboard")


def dashboard_router(load_state: Callable[[str], Any]) -> APIRouter:
    """The map-layer routes of the dashboard (and the page's redirect)."""
    router = APIRouter(tags=["dashboard"])
    cache = LayerCache()

    def layer(city_id: str, name: str, render: Callable[[Any], Any]) -> Any:
        state = load_state(city_id)
        return cache.get_or_render((city_id, name, getattr(state, "version", None)),
                                   lambda: render(state))

    @router.get("/dashboard", include_in_schema=False)
    def dashboard_redirect() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)

    @router.get("/cities/{city_id}/maps/info", summary="Map overlay bounds and legends")
    async def maps_info(city_id: str) -> JSONResponse:
        info = await run_in_threadpool(layer, city_id, "info", map_info)
        return JSONResponse(info)

    @router.get("/cities/{city_id}/maps/rgb.png", summary="Latest clear true-colour composite")
    async def rgb_png(city_id: str) -> Response:
        data = await run_in_threadpool(layer, city_id, "rgb", render_rgb_png)
        if data is None:
            raise HTTPException(404, f"no clear Sentinel-2 composite for city '{city_id}' "
                                "yet; it appears after the first S2 scene is processed")
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @router.get("/cities/{city_id}/maps/change-overlay.png",
             summary="Time-of-change layer for web maps (Web Mercator aligned)")
    async def change_overlay_png(city_id: str) -> Response:
        data = await run_in_threadpool(layer, city_id, "change", render_change_png)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})

    return router
