"""``/stac``: a STAC API of the results -- the change layers of every city and published
state version (collection ``change-layers``) and the change models as STAC MLM items
(collection ``change-models``).

Routes: the landing page ``/stac``, ``/stac/conformance``, ``/stac/collections[/{id}]``,
``/stac/collections/{id}/items[/{item}]`` and item search ``/stac/search`` (GET and POST:
collections, ids, bbox, intersects, datetime, limit, and the ``offset`` of the next link).
Asset hrefs point at ``products.asset_base_url`` when set (object storage), else at
``/stac/collections/{id}/items/{item}/assets/{key}`` here, which serves the COGs with
HTTP range requests (GDAL's /vsicurl/, odc-stac, stackstac, QGIS read them in place).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from starlette.exceptions import HTTPException

from monitor.errors import RequestError
from monitor.products.layers import LAYER_NAMES, LAYER_SET
from monitor.products.mlm import MODELS_COLLECTION, item_id_for_card, model_item, models_collection
from monitor.products.stac import (
    COG_MEDIA_TYPE,
    item_interval,
    layer_collection,
    parse_item_id,
    with_asset_hrefs,
)
from services.api.context import ApiContext, base_url, context
from services.api.ogc import Interval, parse_bbox, parse_datetime

router = APIRouter(tags=["STAC API"])
Context = Annotated[ApiContext, Depends(context)]

STAC_VERSION = "1.1.0"
GEOJSON = "application/geo+json"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
COLLECTIONS = (LAYER_SET, MODELS_COLLECTION)
MAX_LIMIT = 1000
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class LayerSource(Protocol):
    """The change layers' store (``monitor.adapters.layer_store.LayerStore``)."""

    def cities(self) -> list[str]: ...

    def versions(self, city_id: str) -> list[int]: ...

    def item(self, city_id: str, version: int) -> dict[str, Any] | None: ...

    def size(self, city_id: str, version: int, layer: str) -> int: ...

    def read_range(self, city_id: str, version: int, layer: str, start: int,
                   length: int) -> bytes: ...


class ModelCardSource(Protocol):
    """The model cards (``monitor.adapters.model_cards.ModelCards``)."""

    def cards(self) -> list[dict[str, Any]]: ...

    def onnx_path(self, card: dict[str, Any]) -> Any: ...


# -- the catalog as documents ---------------------------------------------------------
def _link(href: str, rel: str, media_type: str = "application/json", **extra: Any
          ) -> dict[str, Any]:
    return {"href": href, "rel": rel, "type": media_type, **extra}


def _asset_href(ctx: ApiContext, b: str, cid: str, iid: str, key: str) -> str:
    public = ctx.settings.products.asset_base_url
    parsed = parse_item_id(iid)
    if cid == LAYER_SET and public and parsed:
        city, version = parsed
        return f"{public.rstrip('/')}/{city}/layers/v{version:08d}/{key}.tif"
    suffix = ".tif" if cid == LAYER_SET else ".onnx"
    return f"{b}/stac/collections/{cid}/items/{iid}/assets/{key}{suffix}"


def _served(ctx: ApiContext, b: str, cid: str, item: dict[str, Any]) -> dict[str, Any]:
    iid = str(item["id"])
    out = with_asset_hrefs(item, lambda key: _asset_href(ctx, b, cid, iid, key))
    out["collection"] = cid
    out["links"] = [
        _link(f"{b}/stac/collections/{cid}/items/{iid}", "self", GEOJSON),
        _link(f"{b}/stac/collections/{cid}", "parent"),
        _link(f"{b}/stac/collections/{cid}", "collection"),
        _link(f"{b}/stac", "root"),
        *[link for link in item.get("links", []) if link.get("rel") == "license"],
    ]
    return out


def _layer_items(ctx: ApiContext, ids: set[str] | None = None) -> Iterator[dict[str, Any]]:
    layers = ctx.layers
    if layers is None:
        return
    if ids is not None:
        for iid in sorted(ids):
            parsed = parse_item_id(iid)
            if parsed and (found := layers.item(*parsed)) is not None:
                yield found
        return
    for city in layers.cities():
        for version in reversed(layers.versions(city)):  # newest first
            found = layers.item(city, version)
            if found is not None:
                yield found


def _model_items(ctx: ApiContext) -> Iterator[dict[str, Any]]:
    if ctx.model_cards is None:
        return
    for card in ctx.model_cards.cards():
        yield model_item(card, f"./{card.get('onnx', card['name'] + '.onnx')}").to_dict(
            include_self_link=False, transform_hrefs=False)


def _items_of(ctx: ApiContext, cid: str, ids: set[str] | None = None
              ) -> Iterator[dict[str, Any]]:
    if cid == LAYER_SET:
        yield from _layer_items(ctx, ids)
    else:
        for found in _model_items(ctx):
            if ids is None or found["id"] in ids:
                yield found


def _collection_doc(ctx: ApiContext, b: str, cid: str) -> dict[str, Any]:
    if cid == LAYER_SET:
        doc = layer_collection(_layer_items(ctx)).to_dict(include_self_link=False,
                                                          transform_hrefs=False)
    else:
        doc = models_collection(ctx.model_cards.cards() if ctx.model_cards else []).to_dict(
            include_self_link=False, transform_hrefs=False)
    doc["links"] = [
        _link(f"{b}/stac/collections/{cid}", "self"),
        _link(f"{b}/stac", "parent"),
        _link(f"{b}/stac", "root"),
        _link(f"{b}/stac/collections/{cid}/items", "items", GEOJSON),
        *[link for link in doc.get("links", []) if link.get("rel") == "license"],
    ]
    return doc


def known_stac_collection(
    cid: Annotated[str, Path(description=f"collection id: one of {list(COLLECTIONS)}")],
) -> str:
    if cid not in COLLECTIONS:
        raise HTTPException(404, f"unknown STAC collection '{cid}'; there are "
                            f"{list(COLLECTIONS)}")
    return cid


# -- search -----------------------------------------------------------------------------
def _matches(item: dict[str, Any], area: BaseGeometry | None,
             interval: Interval | None) -> bool:
    if area is not None:
        geometry = item.get("geometry")
        if geometry is None or not shape(geometry).intersects(area):
            return False
    if interval is not None:
        start, end = item_interval(item)
        if (interval.end is not None and start > interval.end) or (
                interval.start is not None and end < interval.start):
            return False
    return True


def _area(bbox_text: str | list[float] | None, intersects: dict[str, Any] | None
          ) -> BaseGeometry | None:
    if bbox_text is not None and intersects is not None:
        raise RequestError("intersects", "bbox and intersects were both given",
                           "give one of them")
    if intersects is not None:
        try:
            return shape(intersects)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise RequestError("intersects", f"is not a GeoJSON geometry ({exc})",
                               "give a GeoJSON geometry in lon/lat") from None
    if bbox_text is None:
        return None
    text = bbox_text if isinstance(bbox_text, str) else ",".join(str(v) for v in bbox_text)
    boxes = parse_bbox(text) or []
    area: BaseGeometry = box(*boxes[0])
    for extra in boxes[1:]:
        area = area.union(box(*extra))
    return area


def _search(ctx: ApiContext, b: str, *, collections: list[str] | None,
            ids: list[str] | None, area: BaseGeometry | None, interval: Interval | None,
            limit: int, offset: int, next_link: Callable[[int], dict[str, Any]]
            ) -> dict[str, Any]:
    unknown = [c for c in collections or [] if c not in COLLECTIONS]
    if unknown:
        raise RequestError("collections", f"'{unknown[0]}' is not a collection",
                           f"use {list(COLLECTIONS)}")
    wanted = set(ids) if ids else None
    matched: list[dict[str, Any]] = []
    for cid in collections or list(COLLECTIONS):
        matched += [_served(ctx, b, cid, found) for found in _items_of(ctx, cid, wanted)
                    if _matches(found, area, interval)]
    page = matched[offset:offset + limit]
    links = [_link(f"{b}/stac", "root")]
    if offset + len(page) < len(matched):
        links.append(next_link(offset + limit))
    return {"type": "FeatureCollection", "features": page, "links": links,
            "numberMatched": len(matched), "numberReturned": len(page)}


def _split(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s] if text else None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Offset = Annotated[int, Query(ge=0, description="items to skip (the next link sets it)")]
BboxParam = Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat (CRS84)")]
DatetimeParam = Annotated[str | None, Query(
    alias="datetime", description="RFC 3339 instant or interval (open end '..'): items whose "
    "acquisition period (start_datetime..end_datetime) meets it")]


# -- routes -------------------------------------------------------------------------------
@router.get("/stac", summary="STAC API landing page")
def landing(request: Request, ctx: Context) -> dict[str, Any]:
    b = base_url(request)
    return {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "urban-monitor",
        "title": f"{ctx.api.title} results (STAC)",
        "description": "Change layers (COG) of every monitored city and published state "
                       "version, and the change models as STAC MLM items.",
        "conformsTo": CONFORMANCE,
        "links": [
            _link(f"{b}/stac", "self"), _link(f"{b}/stac", "root"),
            _link(f"{b}/stac/conformance", "conformance"),
            _link(f"{b}/stac/collections", "data"),
            _link(f"{b}/stac/search", "search", GEOJSON, method="GET"),
            _link(f"{b}/stac/search", "search", GEOJSON, method="POST"),
            _link(f"{b}/openapi.json", "service-desc",
                  "application/vnd.oai.openapi+json;version=3.0"),
            *[_link(f"{b}/stac/collections/{cid}", "child") for cid in COLLECTIONS],
        ],
    }


@router.get("/stac/conformance", summary="STAC API conformance classes")
def conformance() -> dict[str, Any]:
    return {"conformsTo": CONFORMANCE}


@router.get("/stac/collections", summary="STAC collections")
def collections(request: Request, ctx: Context) -> dict[str, Any]:
    b = base_url(request)
    docs = [_collection_doc(ctx, b, cid) for cid in COLLECTIONS]
    return {"collections": docs, "links": [_link(f"{b}/stac/collections", "self"),
                                           _link(f"{b}/stac", "root")]}


@router.get("/stac/collections/{cid}", summary="One STAC collection")
def collection(cid: Annotated[str, Depends(known_stac_collection)], request: Request,
               ctx: Context) -> dict[str, Any]:
    return _collection_doc(ctx, base_url(request), cid)


@router.get("/stac/collections/{cid}/items", summary="Items of a STAC collection",
            response_class=JSONResponse)
def items(cid: Annotated[str, Depends(known_stac_collection)], request: Request,
          ctx: Context, bbox: BboxParam = None, datetime: DatetimeParam = None,
          limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    b = base_url(request)
    keep = {k: v for k, v in request.query_params.items() if k != "offset"}

    def next_link(new_offset: int) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in {**keep, "offset": new_offset}.items())
        return _link(f"{b}/stac/collections/{cid}/items?{query}", "next", GEOJSON)

    body = _search(ctx, b, collections=[cid], ids=None, area=_area(bbox, None),
                   interval=parse_datetime(datetime), limit=limit, offset=offset,
                   next_link=next_link)
    body["links"] += [_link(f"{b}/stac/collections/{cid}", "collection")]
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/stac/collections/{cid}/items/{iid}", summary="One STAC item",
            response_class=JSONResponse)
def item(cid: Annotated[str, Depends(known_stac_collection)],
         iid: Annotated[str, Path(description="item id: <city>-v<state version, 8 digits> "
                                              "or <model>-<version>")],
         request: Request, ctx: Context) -> JSONResponse:
    found = next(iter(_items_of(ctx, cid, {iid})), None)
    if found is None:
        raise HTTPException(404, f"no item '{iid}' in STAC collection {cid}")
    return JSONResponse(_served(ctx, base_url(request), cid, found), media_type=GEOJSON)


@router.get("/stac/search", summary="STAC item search (GET)", response_class=JSONResponse)
def search_get(request: Request, ctx: Context,
               collections: Annotated[str | None, Query(
                   description="comma-separated collection ids")] = None,
               ids: Annotated[str | None, Query(description="comma-separated item ids")] = None,
               bbox: BboxParam = None, datetime: DatetimeParam = None,
               intersects: Annotated[str | None, Query(
                   description="a GeoJSON geometry (JSON text)")] = None,
               limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    b = base_url(request)
    geometry = None
    if intersects:
        try:
            geometry = json.loads(intersects)
        except ValueError:
            raise RequestError("intersects", "is not JSON", "give a GeoJSON geometry") from None
    keep = {k: v for k, v in request.query_params.items() if k != "offset"}

    def next_link(new_offset: int) -> dict[str, Any]:
        query = "&".join(f"{k}={v}" for k, v in {**keep, "offset": new_offset}.items())
        return _link(f"{b}/stac/search?{query}", "next", GEOJSON, method="GET")

    body = _search(ctx, b, collections=_split(collections), ids=_split(ids),
                   area=_area(bbox, geometry), interval=parse_datetime(datetime),
                   limit=limit, offset=offset, next_link=next_link)
    return JSONResponse(body, media_type=GEOJSON)


@router.post("/stac/search", summary="STAC item search (POST)", response_class=JSONResponse,
             # a search whose query is the body (the STAC API): it reads, writes nothing,
             # so it needs no API key (tests/integration/test_security.py skips it)
             openapi_extra={"x-read-only": True})
def search_post(request: Request, ctx: Context,
                body: Annotated[dict[str, Any], Body(
                    description="collections, ids, bbox, intersects, datetime, limit, "
                                "offset (as the STAC API item search)")]) -> JSONResponse:
    b = base_url(request)
    limit = body.get("limit", 100)
    offset = body.get("offset", 0)
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise RequestError("limit", f"{limit!r} is not an integer in 1..{MAX_LIMIT}",
                           "give a smaller limit and follow the next links")
    if not isinstance(offset, int) or offset < 0:
        raise RequestError("offset", f"{offset!r} is not a non-negative integer",
                           "follow the next links")

    def next_link(new_offset: int) -> dict[str, Any]:
        return _link(f"{b}/stac/search", "next", GEOJSON, method="POST",
                     body={**body, "offset": new_offset}, merge=False)

    found = _search(ctx, b, collections=body.get("collections"), ids=body.get("ids"),
                    area=_area(body.get("bbox"), body.get("intersects")),
                    interval=parse_datetime(body.get("datetime")), limit=limit,
                    offset=offset, next_link=next_link)
    return JSONResponse(found, media_type=GEOJSON)


# -- assets -----------------------------------------------------------------------------
def _byte_range(header: str | None, total: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a ``Range: bytes=a-b`` header; None for the whole file."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        raise HTTPException(416, f"unsupported Range '{header}'; use bytes=start-end")
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else total - 1, total - 1)
    else:  # the last N bytes
        start, end = max(total - int(m.group(2)), 0), total - 1
    if start >= total or start > end:
        raise HTTPException(416, f"Range '{header}' is outside the {total} bytes")
    return start, end


@router.head("/stac/collections/{cid}/items/{iid}/assets/{name}",
             summary="An item's asset: size and range support", response_class=Response,
             operation_id="stac_asset_head")
@router.get("/stac/collections/{cid}/items/{iid}/assets/{name}",
            summary="An item's asset (COG layers with HTTP range requests, ONNX models)",
            response_class=Response, operation_id="stac_asset",
            responses={200: {"content": {COG_MEDIA_TYPE: {}}},
                       206: {"description": "the requested byte range"}})
async def asset(cid: Annotated[str, Depends(known_stac_collection)],
                iid: Annotated[str, Path(description="item id")],
                name: Annotated[str, Path(description="asset file: <layer>.tif or model.onnx")],
                request: Request, ctx: Context) -> Response:
    if cid == MODELS_COLLECTION:
        card = next((c for c in (ctx.model_cards.cards() if ctx.model_cards else [])
                     if item_id_for_card(c) == iid), None)
        if card is None or name != "model.onnx" or ctx.model_cards is None:
            raise HTTPException(404, f"no asset '{name}' of model item '{iid}'")
        return FileResponse(ctx.model_cards.onnx_path(card),
                            media_type="application/octet-stream")
    layer = name.removesuffix(".tif")
    parsed = parse_item_id(iid)
    if parsed is None or layer not in LAYER_NAMES or ctx.layers is None:
        raise HTTPException(404, f"no asset '{name}' of layer item '{iid}'")
    city, version = parsed
    layers = ctx.layers
    if version not in await run_in_threadpool(layers.versions, city):
        raise HTTPException(404, f"no layer item '{iid}' (not published or pruned)")
    total = await run_in_threadpool(layers.size, city, version, layer)
    wanted = _byte_range(request.headers.get("range"), total)
    start, end = wanted if wanted is not None else (0, total - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
               "Cache-Control": "public, max-age=31536000, immutable"}  # a version never changes
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    status = 206 if wanted is not None else 200
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=COG_MEDIA_TYPE)
    data = await run_in_threadpool(layers.read_range, city, version, layer, start,
                                   end - start + 1)
    return Response(data, status_code=status, headers=headers, media_type=COG_MEDIA_TYPE)
