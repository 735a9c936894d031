"""OGC API - Features Part 1: landing page, conformance, the collections (alerts, cities)
and their items (GeoJSON, CRS84; bbox, datetime, limit/offset paging, city, status).

Filtering and paging of alerts happen in the repository (``AlertRepository.find_alerts``):
SQL for the filters, the count and the page, the exact bbox intersection on the
envelope hits. Standard clients (QGIS, GDAL's OAPIF driver) read these routes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from shapely.geometry import box, shape
from starlette.exceptions import HTTPException

from monitor.domain.records import AlertQuery, Box
from monitor.pipeline.city_stats import CityInfo
from services.api.context import ApiContext, base_url, context
from services.api.ogc import (
    CONFORMANCE,
    CRS84,
    GEOJSON,
    Interval,
    alert_feature,
    paging_links,
)
from services.api.params import (
    Page,
    bbox,
    datetime_interval,
    feed_statuses,
    known_params_only,
    output_format,
    paging,
)

router = APIRouter(tags=["OGC API - Features"])

COLLECTIONS = {
    "alerts": ("Urban change alerts",
               "One feature per construction site: lifecycle status (first, provisional, "
               "confirmed, retracted, withdrawn; the items carry provisional and confirmed "
               "unless status= asks otherwise, status=all for every one), first-detection, "
               "confirmation and estimated change "
               "dates, area (m2), confidence, model version and source scenes. Temporal "
               "property: first_detected."),
    "cities": ("Monitored cities", "Areas of interest of the monitored cities."),
}
Context = Annotated[ApiContext, Depends(context)]


@router.get("/", summary="Landing page")
def landing(request: Request, ctx: Context) -> dict[str, Any]:
    b = base_url(request)
    return {
        "title": ctx.api.title,
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


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


def known_collection(
    cid: Annotated[str, Path(description=f"the collection id: one of {sorted(COLLECTIONS)}")],
) -> str:
    if cid not in COLLECTIONS:
        raise HTTPException(404, f"unknown collection '{cid}'; there are {sorted(COLLECTIONS)}")
    return cid


def _instant(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def temporal_interval(ctx: ApiContext, cid: str) -> list[str | None]:
    """The collection's temporal extent: alerts from the first to the last first detection
    (their temporal property); cities from the first detection on, open (monitoring goes
    on). [null, null] while there is no alert."""
    first = ctx.store.alerts(limit=1)
    if not first:
        return [None, None]
    if cid == "cities":
        return [_instant(first[0].first_detected), None]
    count = ctx.store.count_alerts()
    last = ctx.store.alerts(limit=1, offset=max(count - 1, 0)) or first
    return [_instant(first[0].first_detected), _instant(last[0].first_detected)]


def collection_doc(ctx: ApiContext, b: str, cid: str) -> dict[str, Any]:
    title, description = COLLECTIONS[cid]
    cities = ctx.catalogue.cities().values()
    bounds = [shape(c.aoi).bounds for c in cities] or [(-180.0, -90.0, 180.0, 90.0)]
    extent = [min(x[0] for x in bounds), min(x[1] for x in bounds),
              max(x[2] for x in bounds), max(x[3] for x in bounds)]
    return {
        "id": cid, "title": title, "description": description, "itemType": "feature",
        "crs": [CRS84],
        "extent": {"spatial": {"bbox": [extent], "crs": CRS84},
                   "temporal": {"interval": [temporal_interval(ctx, cid)],
                                "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}},
        "links": [
            {"href": f"{b}/collections/{cid}", "rel": "self", "type": "application/json"},
            {"href": f"{b}/collections/{cid}/items", "rel": "items", "type": GEOJSON,
             "title": title},
        ],
    }


@router.get("/collections", summary="The feature collections")
def collections(request: Request, ctx: Context) -> dict[str, Any]:
    b = base_url(request)
    return {"links": [{"href": f"{b}/collections", "rel": "self", "type": "application/json"}],
            "collections": [collection_doc(ctx, b, cid) for cid in COLLECTIONS]}


@router.get("/collections/{cid}", summary="One collection")
def collection(cid: Annotated[str, Depends(known_collection)], request: Request,
               ctx: Context) -> dict[str, Any]:
    return collection_doc(ctx, base_url(request), cid)


def city_feature(c: CityInfo, b: str) -> dict[str, Any]:
    return {"type": "Feature", "id": c.id, "geometry": c.aoi,
            "properties": {"name": c.name, "country": c.country,
                           "population": json.dumps({str(k): v for k, v in
                                                     sorted(c.population.items())}),
                           "stats": f"{b}/cities/{c.id}/stats"},
            "links": [{"href": f"{b}/collections/cities/items/{c.id}", "rel": "self",
                       "type": GEOJSON}]}


@router.get("/collections/{cid}/items", summary="Features of a collection",
            description="Alerts are filtered by status: without `status` the default feed "
                        "(provisional + confirmed alerts); `status=all` for every status "
                        "(first, provisional, confirmed, retracted, withdrawn) or a "
                        "comma-separated list.",
            dependencies=[Depends(known_params_only), Depends(output_format)],
            response_class=JSONResponse,
            responses={200: {"content": {GEOJSON: {}}, "description": "a FeatureCollection"}})
def items(
    cid: Annotated[str, Depends(known_collection)],
    request: Request,
    ctx: Context,
    boxes: Annotated[list[Box] | None, Depends(bbox)],
    interval: Annotated[Interval | None, Depends(datetime_interval)],
    page: Annotated[Page, Depends(paging)],
    statuses: Annotated[list[str], Depends(feed_statuses)],
    city: Annotated[str | None, Query(description="alerts of this city id only")] = None,
) -> JSONResponse:
    b = base_url(request)
    if cid == "alerts":
        found = ctx.store.find_alerts(AlertQuery(
            city_id=city, statuses=tuple(statuses),
            boxes=tuple(boxes) if boxes is not None else None,
            detected_from=interval.start if interval else None,
            detected_to=interval.end if interval else None), limit=page.limit, offset=page.offset)
        features = [alert_feature(r, b) for r in found.alerts]
        matched = found.matched
    else:
        cities = list(ctx.catalogue.cities().values())
        if boxes is not None:
            cities = [c for c in cities if any(shape(c.aoi).intersects(box(*bb)) for bb in boxes)]
        features = [city_feature(c, b) for c in cities[page.offset:page.offset + page.limit]]
        matched = len(cities)
    keep = {k: v for k, v in request.query_params.items() if k not in ("limit", "offset")}
    body = {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": matched,
        "numberReturned": len(features),
        "timeStamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "links": paging_links(b, cid, keep, page.offset, page.limit, matched, len(features)),
    }
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/collections/{cid}/items/{fid}", summary="One feature",
            dependencies=[Depends(known_params_only), Depends(output_format)],
            response_class=JSONResponse,
            responses={200: {"content": {GEOJSON: {}}, "description": "a Feature"}})
def item(cid: Annotated[str, Depends(known_collection)],
         fid: Annotated[str, Path(description="the feature id: an alert id or a city id")],
         request: Request, ctx: Context) -> JSONResponse:
    b = base_url(request)
    if cid == "alerts":
        record = ctx.store.get_alert(fid)
        if record is None:
            raise HTTPException(404, f"no alert '{fid}' in collection alerts")
        feature = alert_feature(record, b)
    else:
        city = ctx.catalogue.cities().get(fid)
        if city is None:
            raise HTTPException(404, f"no city '{fid}' in collection cities")
        feature = city_feature(city, b)
    feature["links"].append({"href": f"{b}/collections/{cid}", "rel": "collection",
                             "type": "application/json"})
    return JSONResponse(feature, media_type=GEOJSON)
