"""The HTTP API: OGC API - Features (alerts, cities), a live alert stream (SSE), city
statistics (built-up area, SDG 11.3.1), time-of-change maps and webhook subscriptions.

    python -m services.api [--config FILE]        # uvicorn on api.host:api.port

Endpoints:
- ``/``, ``/conformance``, ``/collections``, ``/collections/{alerts|cities}[/items[/{id}]]``:
  OGC API - Features Part 1 (GeoJSON, CRS84; bbox, datetime, limit, offset paging);
  standard clients (QGIS, GDAL's OAPIF driver) read them;
- ``/alerts/stream``: Server-Sent Events, one ``alert`` event (the AlertEvent CloudEvent
  JSON, SSE id = event id) per new alert revision; filters ``city``, ``status``; fed by
  polling the alerts' ``updated_at`` (works with any number of API and alerting processes);
- ``/cities/{id}/stats``: alert counts, built-up area over time, SDG 11.3.1 (see
  ``monitor.domain.sdg`` for the method and its limits);
- ``/cities/{id}/maps/change-date.tif|.png``: time-of-change map from the city state;
- ``/subscriptions``: webhook subscriptions (writes need ``X-API-Key``).

Bad parameters get 400 with a message, unknown things 404, bodies above
``api.max_request_bytes`` 413. Errors use the OGC exception shape {code, description}.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from shapely.geometry import box, mapping, shape
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.adapters.database import Database
from monitor.domain.grid import CityGrid
from monitor.domain.records import AlertQuery, Subscription
from monitor.domain.vocabulary import ALERT_STATUSES, as_utc, iso_utc
from monitor.errors import RequestError, UrbanMonitorError
from monitor.pipeline.alerting import record_to_event
from monitor.pipeline.city_stats import CityInfo, city_stats
from monitor.settings import Settings, load_settings
from services.api_maps import STATUS_CODES, change_day_map, encode_geotiff, encode_png
from services.api_ogc import (
    CONFORMANCE,
    CRS84,
    GEOJSON,
    alert_feature,
    paging_links,
    parse_bbox,
    parse_datetime,
    parse_limit,
    parse_offset,
)

log = logging.getLogger(__name__)

ITEM_PARAMS = {"bbox", "bbox-crs", "datetime", "limit", "offset", "f", "city", "status"}
COLLECTIONS = {
    "alerts": ("Urban change alerts",
               "One feature per construction site: lifecycle status (first, provisional, "
               "confirmed, retracted), first-detection, confirmation and estimated change "
               "dates, area (m2), confidence, model version and source scenes. Temporal "
               "property: first_detected."),
    "cities": ("Monitored cities", "Areas of interest of the monitored cities."),
}


# -- errors and limits ----------------------------------------------------------------
def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``max_bytes`` with 413 (by header, and
    by counting for chunked uploads) before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = _error(413, "PayloadTooLarge",
                         f"request body is larger than {self.max_bytes} bytes; send less")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- request bodies --------------------------------------------------------------------
class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL to POST to")
    cities: list[str] = Field(default_factory=list, description="empty = every city")
    statuses: list[Literal["first", "provisional", "confirmed", "retracted"]] = Field(
        default_factory=list, description="empty = every status")
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="HMAC key; generated when not given")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


def _subscription_out(sub: Subscription, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sub.id, "name": sub.name, "url": sub.url,
        "cities": list(sub.cities), "statuses": list(sub.statuses),
        "min_confidence": sub.min_confidence, "active": sub.active,
        "created": iso_utc(sub.created_at) if sub.created_at else None,
    }
    if secret:
        out["secret"] = sub.secret
    return out


# -- the city catalogue ----------------------------------------------------------------
def load_population_csv(path: str) -> dict[str, dict[int, float]]:
    """CSV with columns city_id, year, population."""
    out: dict[str, dict[int, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    out.setdefault(row["city_id"], {})[int(row["year"])] = float(row["population"])
                except (KeyError, ValueError) as exc:
                    raise UrbanMonitorError(f"population CSV {path}, line {i}: {exc}",
                                            "columns must be city_id,year,population") from exc
    except FileNotFoundError:
        raise UrbanMonitorError(f"population CSV {path} not found",
                                "fix api.population_csv or remove it") from None
    return out


class Catalogue:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.population = (load_population_csv(settings.api.population_csv)
                           if settings.api.population_csv else {})

    def cities(self) -> dict[str, CityInfo]:
        out: dict[str, CityInfo] = {}
        for c in self.settings.cities:
            out[c.id] = CityInfo(id=c.id, name=c.name, country=c.country,
                                 aoi=dict(mapping(c.aoi())), population=dict(c.population),
                                 built_up_km2=dict(c.built_up_km2))
        for row in self.db.cities():
            if row.id not in out:
                out[row.id] = CityInfo(id=row.id, name=row.name, country=row.country,
                                       aoi=row.aoi, population=dict(row.population))
        for city_id, pop in self.population.items():
            if city_id in out:
                out[city_id].population = {**out[city_id].population, **pop}
        return out

    def city(self, city_id: str) -> CityInfo:
        city = self.cities().get(city_id)
        if city is None:
            raise HTTPException(404, f"unknown city '{city_id}'; see /collections/cities/items")
        return city


# -- the app ---------------------------------------------------------------------------
def create_app(settings: Settings, db: Database, state_store: Any | None = None) -> FastAPI:
    """The API over ``db`` (alerts, subscriptions) and, for maps, ``state_store`` (any
    object with ``load(city_id)`` returning the city's change state)."""
    api = settings.api
    app = FastAPI(title=api.title, version="1.0",
                  description="Urban change alerts from Sentinel-1/2, as OGC API - Features, "
                  "a live stream, statistics and maps.")
    app.add_middleware(BodyLimit, max_bytes=api.max_request_bytes)
    catalogue = Catalogue(settings, db)

    @app.exception_handler(RequestError)
    async def _bad_parameter(_: Request, exc: RequestError) -> JSONResponse:
        return _error(400, "InvalidParameterValue", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, "InvalidRequest", f"{where}: {first.get('msg')}".strip(": "))

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        codes = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "NotAllowed",
                 409: "Conflict", 413: "PayloadTooLarge"}
        return _error(exc.status_code, codes.get(exc.status_code, "Error"), str(exc.detail))

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def require_key(request: Request) -> None:
        if not api.api_keys:
            raise HTTPException(403, "writes are disabled: no API keys are configured "
                                "(set api.api_keys)")
        given = request.headers.get("x-api-key", "")
        # Compare against every key, always, in constant time: no timing oracle.
        ok = False
        for key in api.api_keys:
            ok |= hmac.compare_digest(given.encode(), key.encode())
        if not ok:
            raise HTTPException(401, "missing or invalid X-API-Key header")

    def check_params(request: Request, allowed: set[str]) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise RequestError(unknown[0], "is not a parameter of this endpoint",
                               f"use {sorted(allowed)}")
        fmt = request.query_params.get("f")
        if fmt is not None and fmt not in ("json", "geojson"):
            raise RequestError("f", f"'{fmt}' is not offered", "use f=json")

    # -- OGC API - Features -----------------------------------------------------------
    @app.get("/", summary="Landing page")
    def landing(request: Request) -> dict[str, Any]:
        b = base(request)
        return {
            "title": api.title,
            "description": "Urban change alerts from Sentinel-1 and Sentinel-2 "
                           "(OGC API - Features)",
            "links": [
                {"href": f"{b}/", "rel": "self", "type": "application/json",
                 "title": "this document"},
                {"href": f"{b}/openapi.json", "rel": "service-desc",
                 "type": "application/vnd.oai.openapi+json;version=3.0",
                 "title": "the API definition"},
                {"href": f"{b}/docs", "rel": "service-doc", "type": "text/html",
                 "title": "the API documentation"},
                {"href": f"{b}/conformance", "rel": "conformance", "type": "application/json",
                 "title": "conformance classes"},
                {"href": f"{b}/collections", "rel": "data", "type": "application/json",
                 "title": "the collections"},
                {"href": f"{b}/alerts/stream", "rel": "alternate", "type": "text/event-stream",
                 "title": "live alert stream (Server-Sent Events)"},
                {"href": f"{b}/dashboard/", "rel": "alternate", "type": "text/html",
                 "title": "the dashboard (map of alerts, time of change, built-up area)"},
            ],
        }

    @app.get("/conformance", summary="Conformance classes")
    def conformance() -> dict[str, Any]:
        return {"conformsTo": CONFORMANCE}

    def collection_doc(b: str, cid: str) -> dict[str, Any]:
        title, description = COLLECTIONS[cid]
        cities = catalogue.cities().values()
        bounds = [shape(c.aoi).bounds for c in cities] or [(-180.0, -90.0, 180.0, 90.0)]
        extent = [min(x[0] for x in bounds), min(x[1] for x in bounds),
                  max(x[2] for x in bounds), max(x[3] for x in bounds)]
        return {
            "id": cid, "title": title, "description": description, "itemType": "feature",
            "crs": [CRS84],
            "extent": {"spatial": {"bbox": [extent], "crs": CRS84},
                       "temporal": {"interval": [[None, None]]}},
            "links": [
                {"href": f"{b}/collections/{cid}", "rel": "self", "type": "application/json"},
                {"href": f"{b}/collections/{cid}/items", "rel": "items", "type": GEOJSON,
                 "title": title},
            ],
        }

    def known_collection(cid: str) -> None:
        if cid not in COLLECTIONS:
            raise HTTPException(404, f"unknown collection '{cid}'; there are "
                                f"{sorted(COLLECTIONS)}")

    @app.get("/collections", summary="The feature collections")
    def collections(request: Request) -> dict[str, Any]:
        b = base(request)
        docs = [collection_doc(b, cid) for cid in COLLECTIONS]
        return {"links": [{"href": f"{b}/collections", "rel": "self",
                           "type": "application/json"}], "collections": docs}

    @app.get("/collections/{cid}", summary="One collection")
    def collection(cid: str, request: Request) -> dict[str, Any]:
        known_collection(cid)
        return collection_doc(base(request), cid)

    @app.get("/collections/{cid}/items", summary="Features of a collection")
    def items(cid: str, request: Request) -> Response:
        known_collection(cid)
        check_params(request, ITEM_PARAMS)
        q = request.query_params
        boxes = parse_bbox(q.get("bbox"))
        if q.get("bbox-crs") not in (None, CRS84):
            raise RequestError("bbox-crs", f"'{q.get('bbox-crs')}' is not supported",
                               f"use {CRS84}")
        interval = parse_datetime(q.get("datetime"))
        limit = parse_limit(q.get("limit"), api.default_limit, api.max_limit)
        offset = parse_offset(q.get("offset"))
        b = base(request)
        if cid == "alerts":
            features, matched = query_alerts(q, boxes, interval, limit, offset, b)
        else:
            features, matched = query_cities(boxes, limit, offset, b)
        keep = {k: v for k, v in q.items() if k not in ("limit", "offset")}
        body = {
            "type": "FeatureCollection",
            "features": features,
            "numberMatched": matched,
            "numberReturned": len(features),
            "timeStamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "links": paging_links(b, cid, keep, offset, limit, matched, len(features)),
        }
        return JSONResponse(body, media_type=GEOJSON)

    def query_alerts(q: Any, boxes: list[tuple[float, float, float, float]] | None,
                     interval: Any, limit: int, offset: int,
                     b: str) -> tuple[list[dict[str, Any]], int]:
        city = q.get("city")
        statuses = [s for s in (q.get("status") or "").split(",") if s]
        bad = [s for s in statuses if s not in ALERT_STATUSES]
        if bad:
            raise RequestError("status", f"'{bad[0]}' is not a status",
                               f"use one or more of {list(ALERT_STATUSES)}, comma-separated")
        query = AlertQuery(city_id=city, statuses=tuple(statuses),
                           boxes=tuple(boxes) if boxes is not None else None,
                           detected_from=interval.start if interval else None,
                           detected_to=interval.end if interval else None)
        page = db.find_alerts(query, limit=limit, offset=offset)
        return [alert_feature(r, b) for r in page.alerts], page.matched

    def city_feature(c: CityInfo, b: str) -> dict[str, Any]:
        return {"type": "Feature", "id": c.id, "geometry": c.aoi,
                "properties": {"name": c.name, "country": c.country,
                               "population": json.dumps({str(k): v for k, v in
                                                         sorted(c.population.items())}),
                               "stats": f"{b}/cities/{c.id}/stats"},
                "links": [{"href": f"{b}/collections/cities/items/{c.id}", "rel": "self",
                           "type": GEOJSON}]}

    def query_cities(boxes: list[tuple[float, float, float, float]] | None, limit: int,
                     offset: int, b: str) -> tuple[list[dict[str, Any]], int]:
        cities = list(catalogue.cities().values())
        if boxes is not None:
            cities = [c for c in cities if any(shape(c.aoi).intersects(box(*bb)) for bb in boxes)]
        return [city_feature(c, b) for c in cities[offset:offset + limit]], len(cities)

    @app.get("/collections/{cid}/items/{fid}", summary="One feature")
    def item(cid: str, fid: str, request: Request) -> Response:
        known_collection(cid)
        check_params(request, {"f"})
        b = base(request)
        if cid == "alerts":
            record = db.get_alert(fid)
            if record is None:
                raise HTTPException(404, f"no alert '{fid}' in collection alerts")
            feature = alert_feature(record, b)
        else:
            city = catalogue.cities().get(fid)
            if city is None:
                raise HTTPException(404, f"no city '{fid}' in collection cities")
            feature = city_feature(city, b)
        feature["links"].append({"href": f"{b}/collections/{cid}", "rel": "collection",
                                 "type": "application/json"})
        return JSONResponse(feature, media_type=GEOJSON)

    # -- the live stream --------------------------------------------------------------
    @app.get("/alerts/stream", summary="Live alert revisions (Server-Sent Events)")
    async def stream(request: Request, city: str | None = None, status: str | None = None,
                     since: str | None = None) -> StreamingResponse:
        statuses = [s for s in (status or "").split(",") if s]
        bad = [s for s in statuses if s not in ALERT_STATUSES]
        if bad:
            raise RequestError("status", f"'{bad[0]}' is not a status",
                               f"use one or more of {list(ALERT_STATUSES)}")
        if since:
            try:
                cursor = as_utc(datetime.fromisoformat(since.replace("Z", "+00:00")))
            except ValueError:
                raise RequestError("since", f"'{since}' is not an RFC 3339 date-time",
                                   "e.g. 2024-03-01T00:00:00Z") from None
        else:
            cursor = datetime.now(UTC)
        return StreamingResponse(
            _alert_stream(request, db, city, statuses, cursor, api.sse_poll_s,
                          api.sse_heartbeat_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- statistics and maps ----------------------------------------------------------
    @app.get("/cities/{city_id}/stats", summary="Built-up area over time and SDG 11.3.1")
    def stats(city_id: str, request: Request) -> dict[str, Any]:
        check_params(request, {"t1", "t2", "f"})
        city = catalogue.city(city_id)
        return city_stats(city, db.alerts(city_id=city_id, limit=None),
                          request.query_params.get("t1"), request.query_params.get("t2"))

    def load_state(city_id: str) -> Any:
        catalogue.city(city_id)
        if state_store is None:
            raise HTTPException(404, "no change state store is configured for this API")
        try:
            state = state_store.load(city_id)
        except (UrbanMonitorError, FileNotFoundError, KeyError) as exc:
            raise HTTPException(404, f"no change state for city '{city_id}' yet ({exc})") from exc
        if state is None:
            raise HTTPException(404, f"no change state for city '{city_id}' yet; it appears "
                                "after the first scene is processed")
        return state

    def map_statuses(request: Request) -> list[str]:
        check_params(request, {"status"})
        statuses = [s for s in request.query_params.get("status", "confirmed").split(",") if s]
        bad = [s for s in statuses if s not in STATUS_CODES]
        if bad or not statuses:
            raise RequestError("status", f"'{bad[0] if bad else ''}' is not a status",
                               f"use one or more of {list(STATUS_CODES)}")
        return statuses

    @app.get("/cities/{city_id}/maps/change-date.tif", summary="Time-of-change GeoTIFF")
    async def change_map_tif(city_id: str, request: Request) -> Response:
        statuses = map_statuses(request)
        state = await run_in_threadpool(load_state, city_id)
        days = change_day_map(state, statuses)
        grid: CityGrid = state.grid
        data = await run_in_threadpool(encode_geotiff, days, grid,
                                       {"city_id": city_id, "statuses": ",".join(statuses)})
        return Response(data, media_type="image/tiff; application=geotiff",
                        headers={"Content-Disposition":
                                 f'inline; filename="{city_id}-change-date.tif"'})

    @app.get("/cities/{city_id}/maps/change-date.png", summary="Time-of-change PNG")
    async def change_map_png(city_id: str, request: Request) -> Response:
        statuses = map_statuses(request)
        state = await run_in_threadpool(load_state, city_id)
        data, span = await run_in_threadpool(encode_png, change_day_map(state, statuses))
        headers = {"Content-Disposition": f'inline; filename="{city_id}-change-date.png"'}
        if span:
            headers["X-Change-Date-Range"] = f"{span[0]}/{span[1]}"
        return Response(data, media_type="image/png", headers=headers)

    # -- subscriptions ----------------------------------------------------------------
    @app.post("/subscriptions", status_code=201, summary="Subscribe a webhook")
    def create_subscription(body: SubscriptionIn, request: Request) -> JSONResponse:
        require_key(request)
        known = catalogue.cities()
        unknown = [c for c in body.cities if c not in known]
        if unknown:
            raise RequestError("cities", f"unknown city '{unknown[0]}'",
                               "see /collections/cities/items")
        sub = db.add_subscription(Subscription(
            id=uuid.uuid4().hex, name=body.name, url=body.url,
            secret=body.secret or secrets.token_hex(32), cities=body.cities,
            statuses=body.statuses, min_confidence=body.min_confidence))
        return JSONResponse(_subscription_out(sub, secret=True), status_code=201,
                            headers={"Location": f"{base(request)}/subscriptions/{sub.id}"})

    @app.get("/subscriptions", summary="Active webhook subscriptions (without secrets)")
    def list_subscriptions() -> dict[str, Any]:
        return {"subscriptions": [_subscription_out(s) for s in db.subscriptions()]}

    @app.get("/subscriptions/{sub_id}", summary="One subscription (without its secret)")
    def get_subscription(sub_id: str) -> dict[str, Any]:
        sub = db.subscription(sub_id)
        if sub is None or not sub.active:
            raise HTTPException(404, f"no subscription '{sub_id}'")
        return _subscription_out(sub)

    @app.delete("/subscriptions/{sub_id}", status_code=204, summary="Unsubscribe")
    def delete_subscription(sub_id: str, request: Request) -> Response:
        require_key(request)
        if not db.deactivate_subscription(sub_id):
            raise HTTPException(404, f"no subscription '{sub_id}'")
        return Response(status_code=204)

    @app.get("/subscriptions/{sub_id}/deliveries", summary="The delivery log")
    def deliveries(sub_id: str, request: Request) -> dict[str, Any]:
        require_key(request)
        check_params(request, {"limit", "offset"})
        limit = parse_limit(request.query_params.get("limit"), api.default_limit, api.max_limit)
        offset = parse_offset(request.query_params.get("offset"))
        if db.subscription(sub_id) is None:
            raise HTTPException(404, f"no subscription '{sub_id}'")
        rows = db.deliveries(subscription_id=sub_id, limit=limit, offset=offset)
        return {"deliveries": [{
            "id": r.id, "event_id": r.event_id, "alert_id": r.alert_id, "status": r.status,
            "attempts": r.attempts, "last_status_code": r.last_status_code,
            "last_error": r.last_error,
            "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
            "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
        } for r in rows]}

    @app.get("/health", summary="Liveness and database check")
    def health() -> dict[str, Any]:
        return {"status": "ok", "schema_version": db.schema_version()}

    from services.dashboard import mount_dashboard

    mount_dashboard(app, load_state)
    return app


async def _alert_stream(request: Request, db: Database, city: str | None,
                        statuses: Sequence[str], cursor: datetime, poll_s: float,
                        heartbeat_s: float) -> AsyncIterator[bytes]:
    """SSE frames for alert revisions updated at or after ``cursor``.

    The query looks a little back (``overlap``) so a transaction that committed late with an
    earlier timestamp is not missed; (id, revision) pairs already sent are skipped."""
    overlap = timedelta(seconds=max(2.0, 2 * poll_s))
    floor = cursor  # nothing older than the connection (or ``since``) is sent
    sent: dict[tuple[str, int], datetime] = {}
    yield b": urban-monitor alert stream\n\n"  # opens the stream for the client at once
    last_beat = time.monotonic()
    while not await request.is_disconnected():
        rows = await run_in_threadpool(db.alerts, city_id=city, statuses=list(statuses) or None,
                                       updated_since=cursor - overlap, limit=500,
                                       order_by_updated=True)
        for row in rows:
            key = (row.id, row.revision)
            assert row.updated_at is not None  # read back from the database
            updated = row.updated_at
            if key in sent or updated < floor:
                continue
            sent[key] = updated
            event = record_to_event(row, time=updated)
            yield (f"id: {event.id}\nevent: alert\ndata: {event.to_json().decode()}\n\n"
                   ).encode()
            cursor = max(cursor, updated)
        horizon = cursor - 2 * overlap
        for key in [k for k, t in sent.items() if t < horizon]:
            del sent[key]
        if time.monotonic() - last_beat >= heartbeat_s:
            yield b": heartbeat\n\n"  # keeps proxies from closing an idle stream
            last_beat = time.monotonic()
        await asyncio.sleep(poll_s)


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    from monitor.cli import configure_logging
    from monitor.pipeline.runtime import open_database, state_store

    parser = argparse.ArgumentParser(prog="urban-monitor-api", description=__doc__)
    parser.add_argument("--config", help="settings YAML (default config/default.yaml)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging(settings.logging.level)
    app = create_app(settings, open_database(settings), state_store(settings))
    uvicorn.run(app, host=args.host or settings.api.host, port=args.port or settings.api.port,
                log_level=settings.logging.level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
