"""The API's query parameters as reusable dependencies, so that every route declares them
(and the OpenAPI document lists them with their types and descriptions):

- :func:`bbox` (``bbox``, ``bbox-crs``), :func:`datetime_interval` (``datetime``),
  :func:`paging` (``limit``, ``offset``), :func:`alert_statuses` and :func:`map_statuses`
  (``status``), :func:`output_format` (``f``);
- :func:`known_params_only`, a router dependency: a query parameter the route does not
  declare is a 400 naming it (OGC API - Features asks servers to refuse them).

Values that need more than a type (a bbox, an RFC 3339 interval, a status list) are
parsed by ``services.api.ogc`` and ``parse_statuses`` with messages that say what to
give instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant

from monitor.domain.records import Box
from monitor.domain.vocabulary import ALERT_STATUSES, DEFAULT_FEED_STATUSES
from monitor.errors import RequestError
from services.api.context import ApiContext, context
from services.api.ogc import CRS84, Interval, parse_bbox, parse_datetime

MAX_OFFSET = 2**31 - 1  # beyond any table; larger values overflow SQL integers (400, not 500)
STATUS_HELP = ("comma-separated alert statuses: " + ", ".join(ALERT_STATUSES))


def parse_statuses(text: str | None, *, default: str | None = None,
                   required: bool = False) -> list[str]:
    """``"first,confirmed"`` -> ``["first", "confirmed"]``, each one a known status;
    ``"all"`` -> every status."""
    if text is not None and text.strip() == "all":
        return list(ALERT_STATUSES)
    statuses = [s for s in (text if text is not None else default or "").split(",") if s]
    bad = [s for s in statuses if s not in ALERT_STATUSES]
    if bad or (required and not statuses):
        raise RequestError("status", f"'{bad[0] if bad else ''}' is not a status",
                           f"use one or more of {list(ALERT_STATUSES)}, comma-separated")
    return statuses


def bbox(
    bbox: Annotated[str | None, Query(
        description="minLon,minLat,maxLon,maxLat in CRS84 degrees (or 6 values with "
                    "heights, ignored); minLon > maxLon crosses the antimeridian",
        examples=["17.9,59.28,18.16,59.38"])] = None,
    bbox_crs: Annotated[str | None, Query(
        alias="bbox-crs", description=f"the CRS of bbox: only {CRS84}")] = None,
) -> list[Box] | None:
    if bbox_crs not in (None, CRS84):
        raise RequestError("bbox-crs", f"'{bbox_crs}' is not supported", f"use {CRS84}")
    return parse_bbox(bbox)


def datetime_interval(
    value: Annotated[str | None, Query(
        alias="datetime",
        description="an RFC 3339 date or date-time, or an interval start/end with '..' "
                    "for an open end; selects alerts by first detection",
        examples=["2024-03-01", "2024-01-01/2024-06-30", "2024-01-01/.."])] = None,
) -> Interval | None:
    return parse_datetime(value)


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def paging(
    ctx: Annotated[ApiContext, Depends(context)],
    limit: Annotated[int | None, Query(
        ge=1, description="items per page (default api.default_limit); above "
                          "api.max_limit it is clamped")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET,
                                 description="items to skip (paging)")] = 0,
) -> Page:
    chosen = ctx.api.default_limit if limit is None else limit
    return Page(limit=min(chosen, ctx.api.max_limit), offset=offset)


def alert_statuses(
    status: Annotated[str | None, Query(description=STATUS_HELP + ", or 'all' "
                                        "(default: all)")] = None,
) -> list[str]:
    return parse_statuses(status)


FEED_HELP = (STATUS_HELP + ", or 'all' for every status. Default: the default feed, "
             + " + ".join(DEFAULT_FEED_STATUSES) + " (first detections, retracted and "
             "withdrawn alerts only when asked for)")


def feed_statuses(
    status: Annotated[str | None, Query(description=FEED_HELP)] = None,
) -> list[str]:
    """The OGC items' status filter: the default feed unless ``status`` is given."""
    if status is None:
        return list(DEFAULT_FEED_STATUSES)
    return parse_statuses(status)


def map_statuses(
    status: Annotated[str, Query(description=STATUS_HELP + " whose pixels are drawn")] = (
        "confirmed"),
) -> list[str]:
    return parse_statuses(status, required=True)


def output_format(
    f: Annotated[str | None, Query(description="the output format: json (GeoJSON)")] = None,
) -> str:
    if f is not None and f not in ("json", "geojson"):
        raise RequestError("f", f"'{f}' is not offered", "use f=json")
    return f or "json"


def _declared(dependant: Dependant) -> set[str]:
    names = {str(p.alias) for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


_DECLARED: dict[int, set[str]] = {}


def known_params_only(request: Request) -> None:
    """Refuse query parameters the route does not declare (400 naming the first)."""
    route: Any = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    allowed = _DECLARED.get(id(route))
    if allowed is None:
        allowed = _DECLARED[id(route)] = _declared(route.dependant)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise RequestError(unknown[0], "is not a parameter of this endpoint",
                           f"use {sorted(allowed)}")
