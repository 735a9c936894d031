"""The demo's report: ONE self-contained HTML file that the dashboard's own JavaScript
renders without a server.

The page is ``services/static/index.html`` with every ``data-inline`` stylesheet and
script inlined (Leaflet included; the images its CSS refers to become data: URIs), the
map layers as data: URIs, and the results as inline JSON in
``window.URBAN_MONITOR_DATA``. So the report and the live dashboard share every visual:
the map with alerts over the RGB composite, the filters, the legend, the monthly charts
and SDG 11.3.1, plus the report's scoring and timing table (behind a toggle).

Nothing is fetched when the file is opened: it works offline and from ``file://``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.errors import RenderError

STATIC_DIR = Path(__file__).resolve().parents[2] / "services" / "static"
_DATA_MARKER = "<!-- URBAN_MONITOR_DATA -->"
_LINK_RE = re.compile(r'<link rel="stylesheet" href="([^"]+)" data-inline>')
_SCRIPT_RE = re.compile(r'<script src="([^"]+)" data-inline></script>')
_CSS_URL_RE = re.compile(r"url\((['\"]?)(images/[^)'\"]+)\1\)")


def png_data_uri(png: bytes | None) -> str | None:
    """PNG bytes as a data: URI (None stays None)."""
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _read_static(static_dir: Path, relative: str) -> str:
    path = (static_dir / relative).resolve()
    if static_dir.resolve() not in path.parents or not path.is_file():
        raise RenderError(
            f"report asset {relative} is missing from {static_dir}",
            "reinstall urban-monitor (the dashboard files ship in services/static)",
        )
    return path.read_text(encoding="utf-8")


def _inline_css(static_dir: Path, relative: str) -> str:
    css = _read_static(static_dir, relative)
    base = (static_dir / relative).parent

    def to_data_uri(match: re.Match[str]) -> str:
        image = base / match.group(2)
        if not image.is_file():
            return match.group(0)
        mime = "image/svg+xml" if image.suffix == ".svg" else f"image/{image.suffix.lstrip('.')}"
        return f"url(data:{mime};base64,{base64.b64encode(image.read_bytes()).decode('ascii')})"

    return "<style>\n" + _CSS_URL_RE.sub(to_data_uri, css) + "\n</style>"


def _script_json(value: Any) -> str:
    """JSON safe inside <script>: no '</script>', no '<!--', no U+2028/2029 surprises."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _jsonable(value: Any) -> Any:
    """Dates, paths and numpy scalars in the free-form summary become JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    return str(value)


def _city_payload(city: Mapping[str, Any], index: int) -> dict[str, Any]:
    if "id" not in city:
        raise RenderError(f"report city #{index} has no 'id'", "give every city an id and a name")
    alerts = city.get("alerts") or {"type": "FeatureCollection", "features": []}
    if alerts.get("type") != "FeatureCollection":
        raise RenderError(f"alerts of city {city['id']} are not a GeoJSON FeatureCollection",
                          "pass the /collections/alerts/items answer or build one")
    bounds = city.get("bounds")
    if bounds is not None and len(bounds) != 4:
        raise RenderError(f"bounds of city {city['id']} are {bounds!r}",
                          "give [west, south, east, north] in degrees (monitor.reporting.maps.map_bounds)")
    return {
        "id": str(city["id"]),
        "name": str(city.get("name") or city["id"]),
        "bounds": [float(b) for b in bounds] if bounds is not None else None,
        "geometry": city.get("geometry"),
        "rgb_png": png_data_uri(city.get("rgb_png")),
        "change_png": png_data_uri(city.get("change_png")),
        "change_legend": city.get("change_legend"),
        "alerts": _jsonable(alerts),
        "stats": _jsonable(city.get("stats") or {}),
        "overview": _jsonable(city.get("overview")),
        "evidence": _jsonable(city.get("evidence") or {}),
    }


def render_report(*, title: str, cities: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Any] | None = None,
                  generated_at: datetime | str | None = None,
                  static_dir: Path = STATIC_DIR) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    when = generated_at or datetime.now(UTC)
    data = {
        "mode": "static",
        "title": title,
        "generated_at": when if isinstance(when, str) else when.isoformat(timespec="seconds"),
        "summary": _jsonable(dict(summary or {})),
        "cities": [_city_payload(c, i) for i, c in enumerate(cities)],
    }
    page = _read_static(static_dir, "index.html")
    if _DATA_MARKER not in page:
        raise RenderError(f"{static_dir / 'index.html'} lacks the {_DATA_MARKER} marker",
                          "restore the dashboard page from the repository")
    page = _LINK_RE.sub(lambda m: _inline_css(static_dir, m.group(1)), page)
    # Inline scripts: '</script' inside the code would end the tag early, so escape it.
    page = _SCRIPT_RE.sub(
        lambda m: "<script>\n" + _read_static(static_dir, m.group(1)).replace("</script", "<\\/script")
        + "\n</script>", page)
    page = page.replace("<title>Urban Monitor</title>", f"<title>{_escape_html(title)}</title>")
    return page.replace(_DATA_MARKER,
                        f"<script>window.URBAN_MONITOR_DATA = {_script_json(data)};</script>")


def write_report(path: str | Path, *, title: str, cities: Sequence[Mapping[str, Any]],
                 summary: Mapping[str, Any] | None = None,
                 generated_at: datetime | str | None = None) -> Path:
    """Write the self-contained HTML report and return its path.

    ``cities``: one mapping per city with ``id``, ``name``, ``bounds`` ([west, south,
    east, north], from :func:`monitor.reporting.maps.map_bounds`), ``rgb_png`` and
    ``change_png`` (PNG bytes or None, from ``render_rgb_png``/``render_change_png``),
    ``alerts`` (a GeoJSON FeatureCollection whose properties are the AlertData fields),
    ``stats`` (the ``/cities/{id}/stats`` answer: built-up series and SDG 11.3.1), and
    optionally ``change_legend`` (``map_info(state)["change_legend"]``), ``geometry``
    (the city AOI as GeoJSON), ``overview`` (``monitor.reporting.overview.city_overview``:
    the monthly charts and SDG 11.3.1 with its inputs) and ``evidence`` (alert id -> the
    ``/evidence`` answer with its chips as data: URIs). ``summary``: free-form label ->
    value rows (scenes processed, alerts, scores, time per stage, ...), shown behind a
    toggle.
    """
    html = render_report(title=title, cities=cities, summary=summary, generated_at=generated_at)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)  # a half-written report never replaces a good one
    return out


def _escape_html(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
