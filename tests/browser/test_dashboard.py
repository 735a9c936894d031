"""The dashboard in a real browser against the real API: alerts on the map, details on
click, layers, chart, time slider, live updates over SSE, empty and error states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import EMPTY_CITY_ID, ApiServer
from tests.browser.demo_data import alert_record, new_site_alert

READY = "body[data-state='ready']"


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY, timeout=20_000)
    # The overlays load on their own; screenshots and layer checks want them there.
    page.wait_for_function("[...document.querySelectorAll('img.leaflet-image-layer')]"
                           ".every((img) => img.complete)", timeout=20_000)


def test_dashboard_shows_alerts_layers_and_chart(api_server: ApiServer, page: Any,
                                                 artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard")  # the redirect to /dashboard/ included
    alerts = api_server.city.alerts
    assert page.locator("path.alert-shape").count() == len(alerts)
    for status in ("first", "provisional", "confirmed", "retracted"):
        expected = sum(a["status"] == status for a in alerts)
        assert page.locator(f".count-{status} .n").inner_text() == str(expected)
    assert page.locator("#count-total").inner_text() == f"{len(alerts)} of {len(alerts)} alerts shown"
    # Both overlays loaded as real images from the API.
    for cls in ("layer-rgb", "layer-change"):
        img = page.locator(f"img.{cls}")
        assert img.count() == 1
        page.wait_for_function(f"document.querySelector('img.{cls}').naturalWidth > 0")
    # Legend of the time-of-change layer, the built-up chart and SDG 11.3.1.
    assert page.locator("#change-legend .ramp").count() == 1
    assert page.locator("#chart-line").count() == 1
    assert page.locator("#chart-svg circle.dot").count() >= 2
    assert "LCR/PGR" in page.locator("#sdg-table").inner_text()
    assert page.locator("#map-empty").is_hidden()
    assert page.locator("#banner").is_hidden()
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert page.errors == []


def test_clicking_an_alert_shows_its_details(api_server: ApiServer, page: Any,
                                             artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    alert = next(a for a in api_server.city.alerts if a["status"] == "confirmed")
    target = page.locator(f"path[data-alert-id='{alert['alert_id']}']").last
    target.click()
    details = page.locator("#details-table")
    details.wait_for()
    text = details.inner_text()
    assert f"{round(alert['area_m2']):,} m²" in text
    assert f"{round(alert['confidence'] * 100)} %" in text
    assert alert["first_detected"] in text and alert["confirmed"] in text
    assert alert["change_date"] in text
    assert alert["model_version"] in text
    assert alert["scene_ids"][0] in text
    assert "Confirmed" in text
    page.screenshot(path=str(artifacts / "dashboard-details.png"), full_page=True)


def test_new_alert_appears_live_without_reload(api_server: ApiServer, page: Any,
                                               artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    page.wait_for_selector("body[data-live='live']", timeout=15_000)
    before = page.locator("path.alert-shape").count()
    page.evaluate("window.__sameDocument = true")
    live = new_site_alert(api_server.city)
    api_server.db.save_alert(alert_record(live))
    page.wait_for_selector(f"path.alert-shape[data-alert-id='{live['alert_id']}']",
                           timeout=15_000)
    assert page.locator("path.alert-shape").count() == before + 1
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert page.locator(".count-first .n").inner_text() == str(
        1 + sum(a["status"] == "first" for a in api_server.city.alerts))
    # A new revision of the same alert updates it in place.
    live.update(status="provisional", revision=2)
    api_server.db.save_alert(alert_record(live))
    page.wait_for_selector(f"path.alert-provisional[data-alert-id='{live['alert_id']}']",
                           timeout=15_000)
    assert page.locator("path.alert-shape").count() == before + 1
    page.screenshot(path=str(artifacts / "dashboard-live.png"), full_page=True)
    assert page.errors == []


def test_time_slider_shows_alerts_detected_up_to_a_date(api_server: ApiServer, page: Any,
                                                        artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    alerts = api_server.city.alerts
    earliest = min(a["first_detected"] for a in alerts)
    page.evaluate("""(day) => {
        const s = document.getElementById('time-slider');
        s.value = String(Math.floor(Date.parse(day + 'T00:00:00Z') / 86400000));
        s.dispatchEvent(new Event('input'));
    }""", earliest)
    expected = sum(a["first_detected"] <= earliest for a in alerts)
    assert page.locator("path.alert-shape").count() == expected < len(alerts)
    assert page.locator("#time-label").inner_text() == earliest
    # Colour by date of change: the legend says so and the shapes keep their count.
    page.select_option("#colour-by", "date")
    assert "date of change" in page.locator("#status-legend").inner_text()
    assert page.locator("path.alert-shape").count() == expected
    page.evaluate("""() => {
        const s = document.getElementById('time-slider');
        s.value = s.max;
        s.dispatchEvent(new Event('input'));
    }""")
    assert page.locator("path.alert-shape").count() == len(alerts)
    page.screenshot(path=str(artifacts / "dashboard-by-date.png"), full_page=True)


def test_empty_city_says_so(api_server: ApiServer, page: Any, artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/?city={EMPTY_CITY_ID}")
    assert page.locator("#map-empty").is_visible()
    assert "No alerts yet" in page.locator("#map-empty").inner_text()
    assert page.locator("path.alert-shape").count() == 0
    assert page.locator("img.layer-rgb").count() == 0  # no state yet: no overlays
    assert "no alerts yet" in page.locator("#count-total").inner_text()
    assert page.locator("#chart-empty").text_content() == "No confirmed built-up change yet"
    assert "not available" in page.locator("#sdg-unavailable").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-empty.png"), full_page=True)
    assert page.errors == []


def test_unreachable_api_shows_an_error_banner(api_server: ApiServer, page: Any,
                                               artifacts: Path) -> None:
    # The page from the running API, told to use an API root where nothing listens.
    page.goto(f"{api_server.url}/dashboard/?api=http://127.0.0.1:9/")
    banner = page.locator("#banner")
    banner.wait_for(state="visible", timeout=15_000)
    assert "Cannot reach the Urban Monitor API" in banner.inner_text()
    assert "Retrying" in banner.inner_text()
    assert "Waiting for the API" in page.locator("#map-empty").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-unreachable.png"))
