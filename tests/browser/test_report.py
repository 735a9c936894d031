"""The demo report opened from file:// in a real browser: one self-contained file that the
dashboard's JavaScript renders with no server and no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from monitor.reporting.maps import map_info, render_change_png, render_rgb_png
from monitor.reporting.report import write_report
from tests.browser.demo_data import CITY_ID, CITY_NAME, DemoCity


def test_report_renders_offline_from_file(page: Any, demo_city: DemoCity, tmp_path: Path,
                                          artifacts: Path) -> None:
    info = map_info(demo_city.state)
    path = write_report(
        tmp_path / "report.html", title="Urban Monitor demo — Testville",
        cities=[{"id": CITY_ID, "name": CITY_NAME, "bounds": info["bounds"],
                 "rgb_png": render_rgb_png(demo_city.state),
                 "change_png": render_change_png(demo_city.state),
                 "change_legend": info["change_legend"], "geometry": mapping(demo_city.aoi),
                 "alerts": demo_city.feature_collection(), "stats": demo_city.stats()}],
        summary={"Scenes processed": 143, "Alerts": len(demo_city.alerts),
                 "Object F1": 0.8123, "Inference per scene (s)": 1.92},
        generated_at="2024-05-01T12:00:00+00:00")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-state='ready']", timeout=20_000)
    assert page.title() == "Urban Monitor demo — Testville"
    assert page.locator("path.alert-shape").count() == len(demo_city.alerts)
    for cls in ("layer-rgb", "layer-change"):
        page.wait_for_function(f"document.querySelector('img.{cls}').naturalWidth > 0")
    assert page.locator("#chart-line").count() == 1
    assert page.locator("#sdg-table").count() == 1
    summary = page.locator("#summary-table").inner_text()
    assert "Scenes processed" in summary and "143" in summary and "0.812" in summary
    assert page.locator("#live-status").inner_text() == "static report"
    # The time-of-change layer can be switched off and on (Leaflet's layer control).
    toggle = page.locator(".leaflet-control-layers-overlays label", has_text="Time of change")
    toggle.locator("input").uncheck()
    assert page.locator("img.layer-change").count() == 0
    toggle.locator("input").check()
    assert page.locator("img.layer-change").count() == 1
    # Nothing was fetched but the file itself and inline data.
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    page.locator("path.alert-shape").first.dispatch_event("click")
    page.locator("#details-table").wait_for()
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert page.errors == []
