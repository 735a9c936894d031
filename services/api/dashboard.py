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
- ``/cities/{id}/overview`` — period, monthly built-up and newly confirmed area from the
  city's real start, SDG 11.3.1 with its inputs (``monitor.reporting.overview``), and
  the links of the city's latest COG change layers in ``/stac``;
- ``/cities/{id}/alerts/export.geojson`` and ``.gpkg`` — the alerts the page's filters
  select (``monitor.reporting.filters``), as GeoJSON or GeoPackage;
- ``/cities/{id}/alerts/{alert}/evidence`` and ``.../chips/{before|after}.png`` — the
  before/after chips and the observation timeline (``monitor.reporting.chips``);
- ``/cities/{id}/scenes/{item}`` — a processed scene as registered (its SceneEvent).

``load_state(city_id)`` returns the city's change state or raises the API's 404; the
layers are rendered off the event loop and cached per (city, layer, state version).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from threading import Lock
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from monitor.domain.events import SceneData, parse_event
from monitor.domain.records import StoredAlert
from monitor.errors import UrbanMonitorError
from monitor.reporting.features import GEOJSON, alert_feature
from monitor.reporting.filters import parse_filter
from monitor.reporting.maps import map_info, render_change_png, render_rgb_png

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # services/static
_CACHE_SIZE = 16
GEOPACKAGE = "application/geopackage+sqlite3"


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
    app.router.routes.extend(evidence_router(load_state).routes)
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
    async def change_overlay_png(city_id: str, status: Annotated[str | None, Query(
            description="comma-separated statuses whose pixels are drawn (default: first, "
                        "provisional, confirmed); the dashboard passes its status filter")]
            = None) -> Response:
        statuses = None
        if status:
            statuses = tuple(sorted(set(parse_filter(
                status=status, date_field=None, date_from=None, date_to=None,
                min_confidence=None, min_area_ha=None).statuses)))
        name = "change" if statuses is None else "change:" + ",".join(statuses)
        data = await run_in_threadpool(layer, city_id, name,
                                       lambda state: render_change_png(state, statuses=statuses))
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})

    return router


# ------------------------------------------------------------------ overview, downloads, evidence
StatusParam = Annotated[str | None, Query(
    description="comma-separated statuses, or 'all' (default: provisional,confirmed)")]
DateFieldParam = Annotated[str | None, Query(
    description="the date the range applies to: first_detected (default), confirmed or "
                "change_date")]
FromParam = Annotated[str | None, Query(alias="from", description="first day (YYYY-MM-DD)")]
ToParam = Annotated[str | None, Query(alias="to", description="last day (YYYY-MM-DD)")]
ConfidenceParam = Annotated[float | None, Query(ge=0, le=1,
                                               description="minimum confidence 0..1")]
AreaParam = Annotated[float | None, Query(ge=0, description="minimum area in hectares")]


def _context(request: Request) -> Any:
    return request.app.state.context


def _optional_state(load_state: Callable[[str], Any], city_id: str) -> Any:
    try:
        return load_state(city_id)
    except HTTPException as exc:
        if exc.status_code == 404:
            return None
        raise


def _latest_layers(ctx: Any, base: str, city_id: str) -> dict[str, Any] | None:
    """The city's latest published COG change layers: the STAC item and its assets."""
    from monitor.products.layers import LAYER_SET

    layers = getattr(ctx, "layers", None)
    if layers is None:
        return None
    try:
        versions = layers.versions(city_id)
        item = layers.item(city_id, max(versions)) if versions else None
    except (UrbanMonitorError, OSError):
        return None
    if not item:
        return None
    href = f"{base}/stac/collections/{LAYER_SET}/items/{item['id']}"
    assets = {key: {"href": f"{href}/assets/{key}", "title": a.get("title", key)}
              for key, a in (item.get("assets") or {}).items()
              if "cloud-optimized" in str(a.get("type", "")) or str(a.get("href", "")).endswith(".tif")}
    return {"item_id": item["id"], "item": href, "version": max(versions),
            "datetime": (item.get("properties") or {}).get("datetime"), "assets": assets}


def city_scenes(ctx: Any, city_id: str) -> list[SceneData]:
    """The city's processed scenes (their SceneEvent data) from the scene registry."""
    registry = getattr(ctx.store, "scenes", None)
    if registry is None:
        return []
    out = []
    for row in registry(city_id=city_id, statuses=["processed"]):
        try:
            data = parse_event(row.event_json).data
        except UrbanMonitorError:
            continue
        if isinstance(data, SceneData):
            out.append(data)
    return out


class SigningReader:
    """The raster reader with each scene's assets signed first, as the inference worker
    signs them (Planetary Computer SAS tokens): the registry keeps unsigned hrefs."""

    def __init__(self, settings: Any) -> None:
        from monitor.adapters.raster import RasterioSceneReader, asset_policies
        from monitor.adapters.signing import signer_for

        # the same asset policies as the worker: chips open only hrefs a provider allows
        self.reader = RasterioSceneReader(policies=asset_policies(settings.providers))
        self.signers = {}
        for name, p in settings.providers.items():
            key = p.subscription_key.get_secret_value() if p.subscription_key else None
            signer = signer_for(p.signing, sas_url=p.sas_url, subscription_key=key)
            if signer is not None:
                self.signers[name] = signer

    def read_s2(self, scene: SceneData, grid: Any, bands: Any = ("red", "green", "blue")) -> Any:
        signer = self.signers.get(scene.provider)
        return self.reader.read_s2(signer.sign_scene(scene) if signer else scene, grid,
                                   bands=bands)


RevisionParam = Annotated[int | None, Query(
    ge=1, description="the alert revision (default: the latest); AlertEvents link to their "
                      "own revision")]


def evidence_router(load_state: Callable[[str], Any]) -> APIRouter:
    """Overview, downloads and the evidence behind each alert (chips, timeline, scenes)."""
    from monitor.reporting.overview import builtup_estimate_m2, city_overview, state_period

    router = APIRouter(tags=["dashboard"])
    cache = LayerCache(size=64)
    readers: dict[int, SigningReader] = {}

    def reader_for(ctx: Any) -> SigningReader:
        """One reader per app (its signers cache their tokens)."""
        if id(ctx) not in readers:
            readers[id(ctx)] = SigningReader(ctx.settings)
        return readers[id(ctx)]

    def overview(request: Request, city_id: str) -> dict[str, Any]:
        ctx = _context(request)
        city = ctx.catalogue.city(city_id)
        state = _optional_state(load_state, city_id)
        alerts = ctx.store.alerts(city_id=city_id, limit=None)
        start, baseline_end, latest = state_period(state)
        if start is None:  # no state here: the registry knows when the city started
            acquired = [s.acquired.date() for s in city_scenes(ctx, city_id)]
            start = min(acquired) if acquired else None
            latest = max(acquired) if acquired else None
            baseline_end = start
        built = cache.get_or_render((city_id, "built-up", getattr(state, "version", None)),
                                    lambda: builtup_estimate_m2(state)) if state else None
        body = city_overview(alerts=alerts, population=city.population,
                             built_up_km2=city.built_up_km2, start=start,
                             baseline_end=baseline_end, latest=latest,
                             built_up_latest_m2=built)
        body.update(city_id=city_id, name=city.name,
                    layers=_latest_layers(ctx, str(request.base_url).rstrip("/"), city_id))
        return body

    @router.get("/cities/{city_id}/overview",
                summary="Monthly built-up and confirmed area, SDG 11.3.1 with its inputs")
    async def overview_route(request: Request, city_id: str) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(overview, request, city_id))

    @router.get("/cities/{city_id}/alerts/export.{fmt}",
                summary="The alerts the dashboard's filters select, as GeoJSON or GeoPackage",
                response_class=Response,
                responses={200: {"content": {GEOJSON: {}, GEOPACKAGE: {}}}})
    async def export(request: Request, city_id: str, fmt: Literal["geojson", "gpkg"],
                     status: StatusParam = None, date_field: DateFieldParam = None,
                     date_from: FromParam = None, date_to: ToParam = None,
                     min_confidence: ConfidenceParam = None,
                     min_area_ha: AreaParam = None) -> Response:
        ctx = _context(request)
        ctx.catalogue.city(city_id)
        selection = parse_filter(status=status, date_field=date_field, date_from=date_from,
                                 date_to=date_to, min_confidence=min_confidence,
                                 min_area_ha=min_area_ha)
        base = str(request.base_url).rstrip("/")
        alerts = await run_in_threadpool(
            lambda: selection.apply(ctx.store.alerts(city_id=city_id,
                                                     statuses=list(selection.statuses),
                                                     limit=None)))
        features = [alert_feature(a, base) for a in alerts]
        name = f"{city_id}-alerts"
        if fmt == "gpkg":
            from monitor.reporting.geopackage import alerts_geopackage

            data = await run_in_threadpool(alerts_geopackage, features)
            return Response(data, media_type=GEOPACKAGE, headers={
                "Content-Disposition": f'attachment; filename="{name}.gpkg"'})
        body = {"type": "FeatureCollection", "features": features,
                "numberMatched": len(features), "numberReturned": len(features)}
        return JSONResponse(body, media_type=GEOJSON, headers={
            "Content-Disposition": f'attachment; filename="{name}.geojson"'})

    def evidence(request: Request, city_id: str, alert_id: str,
                 revision: int | None = None) -> dict[str, Any]:
        from monitor.domain.site_log import entries_as_dicts
        from monitor.reporting.chips import alert_evidence

        ctx = _context(request)
        ctx.catalogue.city(city_id)
        alert: StoredAlert | None = ctx.store.get_alert(alert_id)
        if alert is None or alert.city_id != city_id:
            raise HTTPException(404, f"no alert '{alert_id}' in city '{city_id}'")
        wanted = alert.revision if revision is None else revision
        kept = getattr(ctx.store, "alert_revision", None)
        made = kept(alert_id, wanted) if kept is not None else None
        if wanted != alert.revision:
            if made is None:
                raise HTTPException(404, f"alert '{alert_id}' has no recorded revision "
                                    f"{wanted} (its latest is {alert.revision}; revisions "
                                    "made before this version of Urban Monitor are not kept)")
            alert = made.alert
        moved_by = made.moved_by if made is not None else ()
        state = _optional_state(load_state, city_id)
        log = getattr(state, "site_log", {}) if state is not None else {}
        entries = (entries_as_dicts(log.get(int(alert.site_id), []))
                   if alert.site_id and str(alert.site_id).isdigit() else [])
        return cache.get_or_render(
            (city_id, f"evidence:{alert.id}:{alert.revision}", getattr(state, "version", 0)),
            lambda: alert_evidence(alert, city_scenes(ctx, city_id), reader_for(ctx),
                                   moved_by=moved_by, site_log=entries))

    @router.get("/cities/{city_id}/alerts/{alert_id}/evidence",
                summary="Before/after chips and observation timeline of an alert revision")
    async def evidence_route(request: Request, city_id: str, alert_id: str,
                             revision: RevisionParam = None) -> JSONResponse:
        found = await run_in_threadpool(evidence, request, city_id, alert_id, revision)
        base = f"{str(request.base_url).rstrip('/')}/cities/{city_id}/alerts/{alert_id}/chips"
        body = {k: v for k, v in found.items() if k != "png"}
        for side in ("before", "after"):
            if body[side] is not None and found["png"][side] is not None:
                body[side] = {**body[side], "png": f"{base}/{side}.png?revision={found['revision']}"}
        scenes_base = f"{str(request.base_url).rstrip('/')}/cities/{city_id}/scenes"
        body["timeline"] = [{**row, "href": f"{scenes_base}/{row['item_id']}"}
                            for row in body["timeline"]]
        return JSONResponse(body)

    @router.get("/cities/{city_id}/alerts/{alert_id}/chips/{side}.png",
                summary="Before/after true-colour chip of an alert revision",
                response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def chip_route(request: Request, city_id: str, alert_id: str,
                         side: Literal["before", "after"], revision: RevisionParam = None
                         ) -> Response:
        found = await run_in_threadpool(evidence, request, city_id, alert_id, revision)
        data = found["png"][side]
        if data is None:
            raise HTTPException(404, f"no clear Sentinel-2 scene {side} the change of alert "
                                f"'{alert_id}'")
        scene = found[side]
        return Response(data, media_type="image/png", headers={
            "Cache-Control": "max-age=3600", "X-Scene-Id": scene["item_id"],
            "X-Acquired": scene["acquired"]})

    @router.get("/cities/{city_id}/scenes/{item_id}", summary="A processed scene (its SceneEvent)")
    async def scene_route(request: Request, city_id: str, item_id: str) -> JSONResponse:
        ctx = _context(request)
        ctx.catalogue.city(city_id)
        registry = getattr(ctx.store, "scenes", None)
        rows = await run_in_threadpool(lambda: registry(city_id=city_id) if registry else [])
        for row in rows:
            if row.item_id == item_id:
                import json

                event = json.loads(row.event_json)
                data = event.get("data") or {}
                stac = data.get("stac_api")
                source = (f"{stac.rstrip('/')}/collections/{data.get('collection')}/items/{item_id}"
                          if stac else None)
                return JSONResponse({"item_id": item_id, "status": row.status,
                                     "acquired": row.acquired.isoformat(),
                                     "modality": row.modality, "collection": row.collection,
                                     "source_item": source, "event": event})
        raise HTTPException(404, f"no scene '{item_id}' registered for city '{city_id}'")

    return router



