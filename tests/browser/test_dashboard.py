"""The dashboard in a real browser against the real API: the default view (provisional and
confirmed alerts only, a plain-words summary, the legend), filters that change what is
drawn and live in the URL, alert details with before/after chips and the observation
timeline, downloads, monthly charts and SDG 11.3.1, live updates over SSE, empty and
error states."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from monitor.domain.rendering import iso_to_day
from monitor.reporting.png import decode_png
from tests.browser.conftest import EMPTY_CITY_ID, ApiServer
from tests.browser.demo_data import alert_record, new_site_alert

READY = "body[data-state='ready']"
DEFAULT = ("provisional", "confirmed")


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY, timeout=20_000)
    # The overlays load on their own; screenshots and layer checks want them there.
    page.wait_for_function("[...document.querySelectorAll('img.leaflet-image-layer')]"
                           ".every((img) => img.complete)", timeout=20_000)


def _drawn_ids(page: Any) -> set[str]:
    return set(page.eval_on_selector_all(
        "path.alert-shape", "(paths) => paths.map((p) => p.getAttribute('data-alert-id'))"))


def _ids(alerts: list[dict[str, Any]], keep: Any) -> set[str]:
    return {a["alert_id"] for a in alerts if keep(a)}


def test_default_view_shows_what_matters_first(api_server: ApiServer, page: Any,
                                               artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard")  # the redirect to /dashboard/ included
    alerts = api_server.city.alerts
    assert _drawn_ids(page) == _ids(alerts, lambda a: a["status"] in DEFAULT)
    # No first detection or retraction is drawn by default, as shape or as marker.
    for status in ("first", "retracted", "withdrawn"):
        assert page.locator(f".alert-{status}, .alert-marker-{status}").count() == 0
    assert page.locator("path.alert-shape").count() == sum(a["status"] in DEFAULT for a in alerts)
    # The counts still say what exists behind the filter.
    for status in ("first", "provisional", "confirmed", "retracted"):
        expected = sum(a["status"] == status for a in alerts)
        assert page.locator(f".count-{status} .n").inner_text() == str(expected)
    shown = sum(a["status"] in DEFAULT for a in alerts)
    assert page.locator("#count-total").inner_text() == f"{shown} of {len(alerts)} alerts shown"
    # The sentence at the top, in plain words.
    confirmed = [a for a in alerts if a["status"] == "confirmed"]
    hectares = sum(a["area_m2"] for a in confirmed) / 1e4
    headline = page.locator("#headline-text").inner_text()
    assert f"{len(confirmed)} confirmed new construction sites, {hectares:.1f} ha, since 2019-01-01" in headline
    assert f"{sum(a['status'] == 'provisional' for a in alerts)} provisional" in headline
    hidden = page.locator("#headline-hidden").inner_text()
    assert "1 first detection" in hidden and "1 retracted" in hidden
    # The legend explains the lifecycle, confidence and what to do with each status.
    legend = page.locator("#lifecycle-list").inner_text()
    for label in ("First detection", "Provisional", "Confirmed", "Retracted", "Withdrawn"):
        assert label in legend
    assert legend.count("What to do") == 5
    assert "not a probability" in page.locator("#confidence-legend").inner_text()
    # Both overlays loaded as real images from the API.
    for cls in ("layer-rgb", "layer-change"):
        assert page.locator(f"img.{cls}").count() == 1
        page.wait_for_function(f"document.querySelector('img.{cls}').naturalWidth > 0")
    assert page.locator("#map-empty").is_hidden()
    assert page.locator("#banner").is_hidden()
    # The map comes before the charts on the page.
    map_top = page.locator("#map").bounding_box()["y"]
    assert map_top < page.locator("#chart").bounding_box()["y"]
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert page.errors == []


def test_filters_change_what_is_drawn_and_live_in_the_url(api_server: ApiServer, page: Any,
                                                          artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    alerts = api_server.city.alerts
    # Status: retracted ones appear when asked for, and the URL says so.
    page.check("#filter-status input[value='retracted']")
    assert _drawn_ids(page) == _ids(alerts, lambda a: a["status"] in (*DEFAULT, "retracted"))
    assert page.locator("path.alert-retracted").count() == 1
    query = parse_qs(urlparse(page.url).query)
    assert query["status"] == ["provisional,confirmed,retracted"]
    # The time-of-change layer follows the status filter: its pixels are those statuses'.
    overlay = page.locator("img.layer-change")
    assert "status=provisional,confirmed,retracted" in overlay.get_attribute("src")
    page.uncheck("#filter-status input[value='retracted']")
    assert "status=provisional,confirmed" in overlay.get_attribute("src")
    src = overlay.get_attribute("src")
    opaque = {}
    for statuses in ("provisional,confirmed", "first,provisional,confirmed", "withdrawn"):
        png = httpx.get(src.replace("status=provisional,confirmed", f"status={statuses}"),
                        timeout=10).content
        opaque[statuses] = int((decode_png(png)[..., 3] > 0).sum())
    assert 0 == opaque["withdrawn"] < opaque["provisional,confirmed"]
    assert opaque["provisional,confirmed"] < opaque["first,provisional,confirmed"]
    # Confidence: at least 70 %.
    page.fill("#filter-confidence", "70")
    page.dispatch_event("#filter-confidence", "change")
    assert _drawn_ids(page) == _ids(
        alerts, lambda a: a["status"] in DEFAULT and a["confidence"] >= 0.7)
    # Date range on the change date.
    changes = sorted(a["change_date"] for a in alerts)
    lo, hi = changes[1], changes[-2]
    page.select_option("#filter-date-field", "change_date")
    page.fill("#filter-from", lo)
    page.dispatch_event("#filter-from", "change")
    page.fill("#filter-to", hi)
    page.dispatch_event("#filter-to", "change")
    expected = _ids(alerts, lambda a: a["status"] in DEFAULT and a["confidence"] >= 0.7
                    and lo <= a["change_date"] <= hi)
    assert _drawn_ids(page) == expected
    assert len(expected) < sum(a["status"] in DEFAULT for a in alerts)
    query = parse_qs(urlparse(page.url).query)
    assert query["date_field"] == ["change_date"] and query["from"] == [lo]
    assert query["to"] == [hi] and query["min_confidence"] == ["0.7"]
    # Minimum area.
    areas = sorted(a["area_m2"] for a in alerts if a["alert_id"] in expected)
    page.fill("#filter-area", str(areas[-1] / 1e4))
    page.dispatch_event("#filter-area", "change")
    assert _drawn_ids(page) == {a["alert_id"] for a in alerts
                                if a["alert_id"] in expected and a["area_m2"] >= areas[-1]}
    page.screenshot(path=str(artifacts / "dashboard-filtered.png"), full_page=True)
    # The URL is the view: opening it elsewhere shows the same alerts and inputs.
    shared, drawn = page.url, _drawn_ids(page)
    other = page.context.new_page()
    _open(other, shared)
    assert _drawn_ids(other) == drawn
    assert other.input_value("#filter-from") == lo and other.input_value("#filter-confidence") == "70"
    assert other.input_value("#filter-date-field") == "change_date"
    other.close()
    # Confirmed only, by URL; and a filter that matches nothing says so.
    _open(page, f"{api_server.url}/dashboard/?status=confirmed")
    assert _drawn_ids(page) == _ids(alerts, lambda a: a["status"] == "confirmed")
    assert "provisional" not in page.locator("#headline-text").inner_text()
    _open(page, f"{api_server.url}/dashboard/?status=withdrawn")
    assert page.locator("path.alert-shape").count() == 0
    assert "No alert matches the filters" in page.locator("#map-empty").inner_text()
    assert page.errors == []


def test_alert_details_show_chips_timeline_and_links(api_server: ApiServer, page: Any,
                                                     artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    alert = next(a for a in api_server.city.alerts if a["status"] == "confirmed")
    page.locator(f"path[data-alert-id='{alert['alert_id']}']").last.click()
    details = page.locator("#details-table")
    details.wait_for()
    text = details.inner_text()
    assert f"{round(alert['area_m2']):,} m²" in text
    assert f"{round(alert['confidence'] * 100)} %" in text
    assert alert["first_detected"] in text and alert["confirmed"] in text
    assert alert["change_date"] in text
    assert alert["model_version"] in text
    assert alert["scene_ids"][0] in text
    assert "Act on it" in page.locator("#details .advice").inner_text()
    # The before/after chips load as real images read from the scenes' GeoTIFFs.
    for side in ("before", "after"):
        page.wait_for_selector(f"#chip-{side}", timeout=20_000)
        page.wait_for_function(
            f"document.getElementById('chip-{side}').complete && "
            f"document.getElementById('chip-{side}').naturalWidth > 0", timeout=20_000)
    captions = page.locator(".chip figcaption").all_inner_texts()
    before_day, after_day = captions[0].split(" · ")[1], captions[1].split(" · ")[1]
    assert before_day < alert["change_date"] <= alert["confirmed"] <= after_day
    # The observation timeline: the scenes around the alert and its lifecycle dates.
    assert page.locator("#timeline-svg circle.obs").count() >= 3
    assert page.locator("#timeline-svg line.event-confirmed").count() == 1
    # What each scene said about the site (the state's site log): p(change) dots on the
    # scenes it logged, hollow where the site was mostly cloudy, and the evidence line.
    lo = iso_to_day(alert["change_date"]) - 120  # the timeline's window
    hi = max(iso_to_day(alert[k]) for k in ("first_detected", "confirmed", "change_date")) + 90
    logged = [e for e in api_server.city.state.site_log[int(alert["site_id"])]
              if lo <= e[0] <= hi]
    dots = page.locator("#evidence-svg circle.pchange")
    assert dots.count() == len(logged) >= 2
    assert page.locator("#evidence-svg circle.pchange-cloudy").count() == sum(
        1 for e in logged if e[3] / e[2] < 0.5) >= 1
    assert page.locator("#evidence-svg polyline.evidence-line").count() == 1
    assert "p(change) 0.70" in (dots.first.locator("title").text_content() or "")
    # Links: the feature in the OGC API and its GeoJSON.
    href = page.get_attribute("#link-feature", "href")
    feature = httpx.get(href, timeout=10).json()
    assert feature["id"] == alert["alert_id"]
    assert page.get_attribute("#link-geojson", "href").endswith("?f=json")
    # The selection is part of the URL.
    assert parse_qs(urlparse(page.url).query)["alert"] == [alert["alert_id"]]
    page.locator("#details-panel").screenshot(path=str(artifacts / "dashboard-details.png"))
    page.screenshot(path=str(artifacts / "dashboard-details-page.png"), full_page=True)
    assert page.errors == []


def test_downloads_follow_the_filters(api_server: ApiServer, page: Any) -> None:
    _open(page, f"{api_server.url}/dashboard/?min_confidence=0.6")
    alerts = api_server.city.alerts
    expected = _ids(alerts, lambda a: a["status"] in DEFAULT and a["confidence"] >= 0.6)
    assert _drawn_ids(page) == expected
    geojson = httpx.get(page.get_attribute("#download-geojson", "href"), timeout=10)
    assert geojson.headers["content-type"].startswith("application/geo+json")
    assert {f["id"] for f in geojson.json()["features"]} == expected
    gpkg = httpx.get(page.get_attribute("#download-gpkg", "href"), timeout=10)
    assert gpkg.content.startswith(b"SQLite format 3\x00")
    assert "alerts.gpkg" in gpkg.headers["content-disposition"]
    ogc = httpx.get(page.get_attribute("#download-ogc", "href"), timeout=10).json()
    assert {f["properties"]["status"] for f in ogc["features"]} <= set(DEFAULT)
    # The COG change layers of the city, from the STAC API.
    cogs = page.locator("#download-cogs a.cog-link")
    assert cogs.count() == 7
    head = httpx.get(cogs.first.get_attribute("href"), headers={"Range": "bytes=0-3"},
                     timeout=10)
    assert head.status_code == 206 and head.content in (b"II*\x00", b"MM\x00*")
    assert page.errors == []


def test_charts_start_at_the_city_start_and_sdg_shows_its_inputs(
        api_server: ApiServer, page: Any, artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    assert page.locator("#chart-line").count() == 1
    ticks = page.eval_on_selector_all("#chart-svg .axis text", "(ts) => ts.map((t) => t.textContent)")
    months = [t for t in ticks if len(t) == 7 and t[4] == "-"]
    assert months[0] == "2019-01"  # the city's first scene, not the 2014 epoch
    assert page.locator("#chart-new-svg rect.bar").count() >= 1
    sdg = page.locator("#sdg").inner_text()
    assert "LCR/PGR" in sdg and "configured built_up_km2 for 2019" in sdg
    assert "48,000" in sdg and "51,000" in sdg  # the population figures used
    assert "2019-03-02" in sdg  # t1: the end of the 60-day baseline
    page.locator(".chart-panel").screenshot(path=str(artifacts / "dashboard-charts.png"))
    assert page.errors == []


def test_new_alert_appears_live_without_reload(api_server: ApiServer, page: Any,
                                               artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/")
    page.wait_for_selector("body[data-live='live']", timeout=15_000)
    before = page.locator("path.alert-shape").count()
    page.evaluate("window.__sameDocument = true")
    live = new_site_alert(api_server.city)
    api_server.db.save_alert(alert_record(live))  # a first detection: behind the filter
    page.wait_for_function(
        "document.querySelector('.count-first .n').textContent === "
        f"'{1 + sum(a['status'] == 'first' for a in api_server.city.alerts)}'", timeout=15_000)
    assert page.locator("path.alert-shape").count() == before
    # It becomes provisional: now it is drawn, in place, without a reload.
    live.update(status="provisional", revision=2)
    api_server.db.save_alert(alert_record(live))
    page.wait_for_selector(f"path.alert-provisional[data-alert-id='{live['alert_id']}']",
                           timeout=15_000)
    assert page.locator("path.alert-shape").count() == before + 1
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # A new state means new overlays: they are re-read (a few seconds later) and stay on.
    first_src = page.get_attribute("img.layer-change", "src")
    page.wait_for_function(f"document.querySelector('img.layer-change') && "
                           f"document.querySelector('img.layer-change').src !== '{first_src}'",
                           timeout=15_000)
    page.wait_for_function("document.querySelector('img.layer-change').naturalWidth > 0")
    assert page.locator("img.layer-rgb").count() == 1
    page.screenshot(path=str(artifacts / "dashboard-live.png"), full_page=True)
    assert page.errors == []


def test_time_slider_shows_alerts_detected_up_to_a_date(api_server: ApiServer, page: Any,
                                                        artifacts: Path) -> None:
    _open(page, f"{api_server.url}/dashboard/?status=all")
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
    assert "no urban change detected yet" in page.locator("#headline-text").inner_text()
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

