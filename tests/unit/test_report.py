"""The self-contained HTML report: everything inline, data safe inside <script>, clear
errors for bad input. (tests/browser/test_report.py opens it in a real browser.)"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from monitor.errors import RenderError
from monitor.reporting.png import decode_png, encode_png
from monitor.reporting.report import png_data_uri, render_report, write_report


def _city(**overrides: object) -> dict[str, object]:
    png = encode_png(np.full((2, 3, 4), 200, np.uint8))
    feature = {"type": "Feature", "id": "a1",
               "geometry": {"type": "Point", "coordinates": [11.5, 48.1]},
               "properties": {"alert_id": "a1", "status": "confirmed", "area_m2": 1200.0,
                              "first_detected": "2021-03-01",
                              "model_version": "m</script><script>alert(1)</script>"}}
    city: dict[str, object] = {
        "id": "testville", "name": "Testville", "bounds": [11.4, 48.0, 11.6, 48.2],
        "rgb_png": png, "change_png": None,
        "alerts": {"type": "FeatureCollection", "features": [feature]},
        "stats": {"built_up_series": [{"date": "2021-01-01", "built_up_m2": 1.0e6}]},
    }
    city.update(overrides)
    return city


def _data_of(html: str) -> dict[str, object]:
    match = re.search(r"window\.URBAN_MONITOR_DATA = (.*?);</script>", html, re.S)
    assert match, "the data script is missing"
    return json.loads(match.group(1))


def test_report_is_self_contained() -> None:
    html = render_report(title="Demo <run>", cities=[_city()],
                         summary={"Scenes": 12, "F1": np.float32(0.75), "day": date(2024, 1, 2)},
                         generated_at=datetime(2024, 5, 1, 12, tzinfo=UTC))
    # No external stylesheet or script: Leaflet and the dashboard are inline.
    assert not re.search(r'<link[^>]+rel="stylesheet"', html)
    assert not re.search(r"<script[^>]+src=", html)
    assert "L.imageOverlay" in html or "imageOverlay" in html  # the dashboard code
    assert "Leaflet" in html
    # Leaflet's CSS images became data: URIs (the layer control icon).
    assert "url(images/" not in html and "url(data:image/png;base64," in html
    assert "<title>Demo &lt;run&gt;</title>" in html
    data = _data_of(html)
    assert data["mode"] == "static" and data["title"] == "Demo <run>"
    assert data["generated_at"] == "2024-05-01T12:00:00+00:00"
    assert data["summary"] == {"Scenes": 12, "F1": 0.75, "day": "2024-01-02"}
    city = data["cities"][0]  # type: ignore[index]
    assert city["rgb_png"].startswith("data:image/png;base64,")
    png = base64.b64decode(city["rgb_png"].split(",", 1)[1])
    assert decode_png(png).shape == (2, 3, 4)
    assert city["change_png"] is None
    assert city["alerts"]["features"][0]["properties"]["area_m2"] == 1200.0


def test_report_data_cannot_close_its_script_tag() -> None:
    html = render_report(title="t", cities=[_city()])
    data_script = html.split("window.URBAN_MONITOR_DATA = ", 1)[1].split(";</script>", 1)[0]
    assert "</script" not in data_script and "<script" not in data_script
    props = _data_of(html)["cities"][0]["alerts"]["features"][0]["properties"]  # type: ignore[index]
    assert props["model_version"] == "m</script><script>alert(1)</script>"


def test_write_report_writes_atomically(tmp_path: Path) -> None:
    out = write_report(tmp_path / "sub" / "report.html", title="t", cities=[_city()],
                       summary={})
    assert out.is_file() and out.read_text().startswith("<!doctype html>")
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_report_refuses_bad_cities() -> None:
    with pytest.raises(RenderError, match="has no 'id'"):
        render_report(title="t", cities=[{"name": "x"}])
    with pytest.raises(RenderError, match="bounds of city testville"):
        render_report(title="t", cities=[_city(bounds=[1, 2, 3])])
    with pytest.raises(RenderError, match="not a GeoJSON FeatureCollection"):
        render_report(title="t", cities=[_city(alerts={"type": "Feature"})])


def test_report_with_no_alerts_and_no_layers() -> None:
    html = render_report(title="t", cities=[_city(alerts=None, rgb_png=None, bounds=None)])
    city = _data_of(html)["cities"][0]  # type: ignore[index]
    assert city["alerts"] == {"type": "FeatureCollection", "features": []}
    assert city["rgb_png"] is None and city["bounds"] is None
    assert png_data_uri(None) is None
