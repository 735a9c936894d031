"""OGC API - Features Part 1 pieces: the bbox and datetime parsers and the GeoJSON
documents (features, paging links).

The alerts' temporal property is ``first_detected`` (a date): ``datetime=`` selects alerts
first detected at that instant (its UTC date) or within that interval; ``..`` or an empty
end opens an interval. bbox is in CRS84 (lon/lat) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from monitor.errors import RequestError
from monitor.reporting.features import GEOJSON, alert_feature

__all__ = ["CONFORMANCE", "CRS84", "GEOJSON", "Interval", "alert_feature", "paging_links",
           "parse_bbox", "parse_datetime"]

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass(frozen=True)
class Interval:
    start: date | None
    end: date | None

    def contains(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


def parse_bbox(text: str | None) -> list[tuple[float, float, float, float]] | None:
    """bbox=minLon,minLat,maxLon,maxLat (or 6 numbers with heights, ignored). A box over
    the antimeridian (minLon > maxLon) becomes two boxes."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise RequestError("bbox", f"'{text}' is not a list of numbers",
                           "give bbox=minLon,minLat,maxLon,maxLat in degrees") from None
    if len(values) not in (4, 6) or not all(math.isfinite(v) for v in values):
        raise RequestError("bbox", f"'{text}' has {len(values)} values, expected 4 (or 6)",
                           "give bbox=minLon,minLat,maxLon,maxLat in degrees")
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    west, south, east, north = values
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90
            and -90 <= north <= 90):
        raise RequestError("bbox", f"'{text}' is outside longitude/latitude bounds",
                           "longitudes in [-180, 180], latitudes in [-90, 90]")
    if south > north:
        raise RequestError("bbox", f"'{text}' has minLat > maxLat",
                           "order the values minLon,minLat,maxLon,maxLat")
    if west > east:
        return [(west, south, 180.0, north), (-180.0, south, east, north)]
    return [(west, south, east, north)]


def _parse_instant(text: str, *, end: bool) -> date:
    try:
        if "T" in text or "t" in text:
            value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
            if value.tzinfo is not None:
                value = value.astimezone(UTC)
            return value.date()
        return date.fromisoformat(text)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
        raise RequestError("datetime", f"'{text}' is out of range in UTC",
                           "give a date-time between years 1 and 9999 in UTC") from None
    except ValueError:
        raise RequestError("datetime", f"'{text}' is not an RFC 3339 date or date-time",
                           "e.g. 2024-03-01, 2024-03-01T00:00:00Z, 2024-01-01/2024-06-30, "
                           "2024-01-01/..") from None


def parse_datetime(text: str | None) -> Interval | None:
    if text is None:
        return None
    text = text.strip()
    if "/" in text:
        parts = text.split("/")
        if len(parts) != 2:
            raise RequestError("datetime", f"'{text}' has more than one '/'",
                               "give an instant or start/end (open ends as '..')")
        start_text, end_text = parts
        start = None if start_text in ("", "..") else _parse_instant(start_text, end=False)
        end = None if end_text in ("", "..") else _parse_instant(end_text, end=True)
        if start is None and end is None:
            raise RequestError("datetime", f"'{text}' is open at both ends",
                               "give at least one end of the interval")
        if start and end and start > end:
            raise RequestError("datetime", f"'{text}' ends before it starts",
                               "give start/end with start <= end")
        return Interval(start, end)
    if text in ("", ".."):
        raise RequestError("datetime", f"'{text}' is not an instant",
                           "give an RFC 3339 date or date-time")
    day = _parse_instant(text, end=False)
    return Interval(day, day)


def paging_links(base_url: str, collection: str, query: dict[str, str], offset: int,
                 limit: int, matched: int, returned: int) -> list[dict[str, str]]:
    def href(new_offset: int) -> str:
        params = {**query, "limit": str(limit), "offset": str(new_offset)}
        return f"{base_url}/collections/{collection}/items?{urlencode(params)}"

    links = [
        {"href": href(offset), "rel": "self", "type": GEOJSON, "title": "this page"},
        {"href": f"{base_url}/collections/{collection}", "rel": "collection",
         "type": "application/json", "title": "the collection"},
    ]
    if offset + returned < matched:
        links.append({"href": href(offset + limit), "rel": "next", "type": GEOJSON,
                      "title": "next page"})
    if offset > 0:
        links.append({"href": href(max(offset - limit, 0)), "rel": "prev", "type": GEOJSON,
                      "title": "previous page"})
    return links
