"""The demo report opened from file:// in a real browser: one self-contained file that the
dashboard's JavaScript renders with no server and no network — the same default view,
filters (kept in the URL's hash), legend, charts, SDG 11.3.1 and evidence chips, with the
scoring and timing tables behind a toggle."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from shapely.geometry import mapping

from monitor.adapters.raster import RasterioSceneReader
from monitor.reporting.chips import alert_evidence, evidence_for_report
from monitor.reporting.maps import map_info, render_change_png, render_rgb_png
from monitor.reporting.overview import builtup_estimate_m2, city_overview, state_period
from monitor.reporting.report import write_report
from tests.browser.demo_data import CITY_ID, CITY_NAME, DemoCity, alert_record

DEFAULT = ("provisional", "confirmed")


@pytest.fixture()
def report(demo_city: DemoCity, demo_scenes: list[Any], tmp_path: Path) -> tuple[Path, str]:
    """The report of the demo city, with the evidence of its first confirmed alert."""
    info = map_info(demo_city.state)
    records = [alert_record(a) for a in demo_city.alerts]
    start, baseline_end, latest = state_period(demo_city.state)
    overview = city_overview(alerts=records, population={2019: 48000, 2022: 51000},
                             start=start, baseline_end=baseline_end, latest=latest,
                             built_up_latest_m2=builtup_estimate_m2(demo_city.state))
    chosen = next(r for r in records if r.status == "confirmed")
    evidence = {chosen.id: evidence_for_report(
        alert_evidence(chosen, demo_scenes, RasterioSceneReader()))}
    path = write_report(
        tmp_path / "report.html", title="Urban Monitor demo — Testville",
        cities=[{"id": CITY_ID, "name": CITY_NAME, "bounds": info["bounds"],
                 "rgb_png": render_rgb_png(demo_city.state),
                 "change_png": render_change_png(demo_city.state),
                 "change_legend": info["change_legend"], "geometry": mapping(demo_city.aoi),
                 "alerts": demo_city.feature_collection(), "stats": demo_city.stats(),
                 "overview": overview, "evidence": evidence}],
        summary={"Scenes processed": 143, "Alerts": len(demo_city.alerts),
                 "Object F1": 0.8123, "Inference per scene (s)": 1.92},
        generated_at="2024-05-01T12:00:00+00:00")
    return path, chosen.id


def test_report_renders_offline_from_file(page: Any, demo_city: DemoCity,
                                          report: tuple[Path, str], artifacts: Path) -> None:
    path, with_evidence = report
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-state='ready']", timeout=20_000)
    assert page.title() == "Urban Monitor demo — Testville"
    alerts = demo_city.alerts
    # The default view: provisional and confirmed only, a sentence on top.
    assert page.locator("path.alert-shape").count() == sum(a["status"] in DEFAULT for a in alerts)
    assert page.locator(".alert-retracted, .alert-marker-retracted").count() == 0
    assert "confirmed new construction sites" in page.locator("#headline-text").inner_text()
    assert page.locator("#lifecycle-list").count() == 1
    for cls in ("layer-rgb", "layer-change"):
        page.wait_for_function(f"document.querySelector('img.{cls}').naturalWidth > 0")
    assert page.locator("#chart-line").count() == 1
    assert page.locator("#chart-new-svg rect.bar").count() >= 1
    assert "LCR/PGR" in page.locator("#sdg").inner_text()
    assert "S2 reference index rule" in page.locator("#sdg-inputs").inner_text()
    # Scoring and timing: there, but behind a toggle.
    summary = page.locator("#summary-table")
    assert summary.is_hidden()
    page.click("#report-details summary")
    assert summary.is_visible()
    text = summary.inner_text()
    assert "Scenes processed" in text and "143" in text and "0.812" in text
    assert page.locator("#live-status").inner_text() == "static report"
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    # The time-of-change layer can be switched off and on (Leaflet's layer control).
    toggle = page.locator(".leaflet-control-layers-overlays label", has_text="Time of change")
    toggle.locator("input").uncheck()
    assert page.locator("img.layer-change").count() == 0
    toggle.locator("input").check()
    assert page.locator("img.layer-change").count() == 1
    # Filters work offline too, and the hash carries them.
    page.check("#filter-status input[value='retracted']")
    assert page.locator("path.alert-retracted").count() == sum(a["status"] == "retracted" for a in alerts)
    assert parse_qs(urlparse(page.url).fragment)["status"] == ["provisional,confirmed,retracted"]
    page.screenshot(path=str(artifacts / "report-filtered.png"), full_page=True)
    # An alert with evidence shows its chips from the file itself.
    page.locator(f"path[data-alert-id='{with_evidence}']").last.dispatch_event("click")
    page.locator("#details-table").wait_for()
    page.wait_for_function("document.getElementById('chip-after') && "
                           "document.getElementById('chip-after').naturalWidth > 0")
    assert page.locator("#timeline-svg circle.obs").count() >= 3
    # Nothing was fetched but the file itself and inline data.
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert page.errors == []


def test_report_link_with_filters_opens_that_view(page: Any, demo_city: DemoCity,
                                                  report: tuple[Path, str]) -> None:
    path, _ = report
    page.goto(path.as_uri() + "#status=confirmed&min_confidence=0.7")
    page.wait_for_selector("body[data-state='ready']", timeout=20_000)
    expected = sum(a["status"] == "confirmed" and a["confidence"] >= 0.7
                   for a in demo_city.alerts)
    assert page.locator("path.alert-shape").count() == expected
    assert page.input_value("#filter-confidence") == "70"
    assert page.errors == []
