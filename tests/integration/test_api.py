"""The HTTP API served by uvicorn on a local port, over SQLite and real PostgreSQL:
OGC API - Features, bad input, subscriptions with API keys, stats, maps, the SSE stream."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from monitor.adapters.database import Database
from monitor.domain.alerts import AlertRules
from monitor.domain.grid import CityGrid
from monitor.pipeline.alerting import apply_change_event
from monitor.settings import AlertingSettings, ApiSettings, CitySettings, Settings
from services.api import create_app
from tests.integration.alerting_fixtures import (
    LOOPBACK_ALLOW,
    make_change,
    make_database,
    rect_region,
    serve,
)

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    yield from make_database(request, tmp_path)


def api_settings(**api: Any) -> Settings:
    cities = [
        CitySettings(id="stockholm", name="Stockholm", country="SE",
                     bbox=(17.90, 59.28, 18.16, 59.38),
                     population={2015: 1_000_000, 2025: 1_100_000},
                     built_up_km2={2020: 10.0}),
        CitySettings(id="lagos", name="Lagos", country="NG", bbox=(3.20, 6.40, 3.55, 6.70)),
    ]
    return Settings(cities=cities, api=ApiSettings(**{"api_keys": [API_KEY], "max_limit": 50,
                                                      "sse_poll_s": 0.1, **api}),
                    alerting=AlertingSettings(webhook_allow_private=LOOPBACK_ALLOW))


def seed_alerts(db: Database) -> dict[str, str]:
    """Five stockholm alerts first detected on different days; two confirmed."""
    rules = AlertRules()
    ids = {}
    for i in range(5):
        status = "confirmed" if i in (1, 3) else "first"
        region = rect_region(f"r{i}", i * 300, 0, 50, 40, status=status,
                             first=date(2024, 1 + i, 10),
                             confirmed=date(2024, 2 + i, 1) if status == "confirmed" else None,
                             change=date(2024, 1 + i, 1), confidence=0.6 + 0.05 * i)
        (event,) = apply_change_event(db, make_change("stockholm", f"scene{i}", [region]).data,
                                      rules=rules, alerts_topic=None)
        ids[f"r{i}"] = event.data.alert_id
    return ids


class FakeState:
    """The interface the maps read (monitor.domain.state.CityState has these)."""

    def __init__(self) -> None:
        self.grid = CityGrid(epsg=32633, origin_x=674_000.0, origin_y=6_580_000.0,
                             width=20, height=10)
        self.status = np.zeros(self.grid.shape, np.uint8)
        self.change_day = np.zeros(self.grid.shape, np.uint16)
        self.status[2:4, 2:6] = 3
        self.change_day[2:4, 2:6] = 3700
        self.status[6, 10] = 1
        self.change_day[6, 10] = 3800
        # last clear S2 view: half the city on 2024-01-10 (day 3661), half never
        self.last_clear_day = np.zeros(self.grid.shape, np.uint16)
        self.last_clear_day[:5] = 3661


class FakeStore:
    def load(self, city_id: str) -> FakeState | None:
        return FakeState() if city_id == "stockholm" else None


def test_ogc_api_features_and_bad_input(db: Database) -> None:
    ids = seed_alerts(db)
    with serve(create_app(api_settings(), db, FakeStore())) as url, httpx.Client(
            base_url=url, timeout=10) as client:
        landing = client.get("/").json()
        rels = {link["rel"] for link in landing["links"]}
        assert {"self", "service-desc", "conformance", "data"} <= rels
        conf = client.get("/conformance").json()["conformsTo"]
        assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in conf
        cols = client.get("/collections").json()["collections"]
        assert [c["id"] for c in cols] == ["alerts", "cities"]
        assert client.get("/collections/alerts").json()["links"][1]["rel"] == "items"

        page1 = client.get("/collections/alerts/items", params={"limit": 2, "status": "all"})
        assert page1.headers["content-type"].startswith("application/geo+json")
        body = page1.json()
        assert (body["numberMatched"], body["numberReturned"]) == (5, 2)
        assert [f["id"] for f in body["features"]] == [ids["r0"], ids["r1"]]
        nxt = next(link["href"] for link in body["links"] if link["rel"] == "next")
        page2 = client.get(nxt).json()
        assert [f["id"] for f in page2["features"]] == [ids["r2"], ids["r3"]]
        assert any(link["rel"] == "prev" for link in page2["links"])
        last = client.get("/collections/alerts/items",
                          params={"limit": 2, "offset": 4, "status": "all"}).json()
        assert last["numberReturned"] == 1 and not any(
            link["rel"] == "next" for link in last["links"])
        feature = body["features"][1]
        assert feature["geometry"]["type"] == "Polygon"
        props = feature["properties"]
        assert (props["status"], props["city_id"], props["first_detected"]) == (
            "confirmed", "stockholm", "2024-02-10")
        assert props["area_m2"] == pytest.approx(2000, rel=1e-3)

        # bbox: the first two sites only (x = 0..50 m and 300..350 m from the origin).
        f0 = body["features"][0]["geometry"]["coordinates"][0]
        f1 = body["features"][1]["geometry"]["coordinates"][0]
        west = min(p[0] for p in f0) - 1e-5
        east = max(p[0] for p in f1) + 1e-5
        south = min(p[1] for p in f0) - 1e-5
        north = max(p[1] for p in f0) + 1e-5
        hits = client.get("/collections/alerts/items",
                          params={"bbox": f"{west},{south},{east},{north}",
                                  "status": "all"}).json()
        assert {f["id"] for f in hits["features"]} == {ids["r0"], ids["r1"]}
        assert hits["numberMatched"] == 2

        def matched(**params: str) -> int:
            params.setdefault("status", "all")
            return client.get("/collections/alerts/items", params=params).json()["numberMatched"]

        assert matched(datetime="2024-03-10") == 1
        assert matched(datetime="2024-03-10T12:00:00Z") == 1
        assert matched(datetime="2024-02-01/2024-04-30") == 3
        assert matched(datetime="../2024-02-10") == 2
        assert matched(datetime="2024-04-01/..") == 2
        assert matched(datetime="2024-04-01/") == 2
        assert matched(status="confirmed") == 2
        assert matched(city="lagos") == 0
        assert client.get("/collections/alerts/items",
                          params={"limit": 10_000, "status": "all"}
                          ).json()["numberReturned"] == 5  # clamped

        one = client.get(f"/collections/alerts/items/{ids['r3']}")
        assert one.status_code == 200 and one.json()["id"] == ids["r3"]
        cities = client.get("/collections/cities/items").json()
        assert [f["id"] for f in cities["features"]] == ["stockholm", "lagos"]
        assert client.get("/collections/cities/items", params={
            "bbox": "3,6,4,7"}).json()["numberMatched"] == 1

        for params, word in [({"bbox": "a,b,c,d"}, "bbox"), ({"bbox": "1,2,3"}, "bbox"),
                             ({"bbox": "0,50,1,40"}, "bbox"), ({"bbox": "0,0,1,95"}, "bbox"),
                             ({"datetime": "2024-13-01"}, "datetime"),
                             ({"datetime": "2024-05-01/2024-01-01"}, "datetime"),
                             ({"datetime": "../.."}, "datetime"),
                             ({"limit": "0"}, "limit"), ({"limit": "ten"}, "limit"),
                             ({"offset": "-1"}, "offset"), ({"status": "maybe"}, "status"),
                             ({"colour": "red"}, "colour")]:
            r = client.get("/collections/alerts/items", params=params)
            assert r.status_code == 400, params
            assert r.json()["code"] == "InvalidParameterValue"
            assert word in r.json()["description"], r.json()
        for path in ("/collections/nope", "/collections/nope/items",
                     "/collections/alerts/items/nope", "/collections/cities/items/atlantis",
                     "/cities/atlantis/stats", "/cities/lagos/maps/change-date.tif"):
            r = client.get(path)
            assert r.status_code == 404, path
            assert r.json()["code"] == "NotFound" and r.json()["description"]


def test_subscriptions_need_an_api_key_and_bodies_are_bounded(db: Database) -> None:
    with serve(create_app(api_settings(max_request_bytes=2048), db)) as url, httpx.Client(
            base_url=url, timeout=10) as client:
        body = {"name": "twin", "url": "http://127.0.0.1:9/hook", "cities": ["stockholm"],
                "statuses": ["confirmed"], "min_confidence": 0.7}
        assert client.post("/subscriptions", json=body).status_code == 401
        assert client.post("/subscriptions", json=body,
                           headers={"X-API-Key": "wrong"}).status_code == 401
        created = client.post("/subscriptions", json=body, headers={"X-API-Key": API_KEY})
        assert created.status_code == 201
        sub = created.json()
        assert len(sub["secret"]) == 64 and sub["cities"] == ["stockholm"]
        assert client.get("/subscriptions").status_code == 401  # reads need the key too
        listed = client.get("/subscriptions",
                            headers={"X-API-Key": API_KEY}).json()["subscriptions"]
        assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
        assert db.subscription(sub["id"]).secret == sub["secret"]  # type: ignore[union-attr]
        log = client.get(f"/subscriptions/{sub['id']}/deliveries",
                         headers={"X-API-Key": API_KEY})
        assert log.status_code == 200 and log.json() == {"deliveries": []}
        # Bad bodies: 400 (422 for the URL) with the field named; too large: 413.
        bad = client.post("/subscriptions", json={**body, "url": "ftp://x/y"},
                          headers={"X-API-Key": API_KEY})
        # (every URL problem, malformed or an unsafe target, is a 422 naming the url)
        assert bad.status_code == 422 and "url" in bad.json()["description"]
        bad = client.post("/subscriptions", json={**body, "cities": ["atlantis"]},
                          headers={"X-API-Key": API_KEY})
        assert bad.status_code == 400 and "atlantis" in bad.json()["description"]
        huge = client.post("/subscriptions", json={**body, "name": "x" * 5000},
                           headers={"X-API-Key": API_KEY})
        assert huge.status_code == 413
        chunked = client.post("/subscriptions", content=iter([b"{" + b" " * 3000, b"}"]),
                              headers={"X-API-Key": API_KEY, "Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert client.delete(f"/subscriptions/{sub['id']}").status_code == 401
        assert client.delete(f"/subscriptions/{sub['id']}",
                             headers={"X-API-Key": API_KEY}).status_code == 204
        assert client.delete(f"/subscriptions/{sub['id']}",
                             headers={"X-API-Key": API_KEY}).status_code == 404
        assert client.get("/subscriptions", headers={"X-API-Key": API_KEY}
                          ).json()["subscriptions"] == []
    # No keys configured: writes are refused outright.
    with serve(create_app(api_settings(api_keys=[]), db)) as url:
        r = httpx.post(f"{url}/subscriptions", json=body, headers={"X-API-Key": API_KEY})
        assert r.status_code == 403


def test_city_stats_and_time_of_change_maps(db: Database) -> None:
    seed_alerts(db)
    with serve(create_app(api_settings(), db, FakeStore())) as url, httpx.Client(
            base_url=url, timeout=10) as client:
        stats = client.get("/cities/stockholm/stats").json()
        assert stats["alerts"] == {"first": 3, "provisional": 0, "confirmed": 2, "retracted": 0,
                                   "withdrawn": 0}
        assert stats["confirmed_area_m2"] == pytest.approx(4000, rel=1e-3)
        series = stats["built_up_series"]
        assert [s["date"] for s in series] == ["2020-01-01", "2024-02-01", "2024-04-01"]
        assert series[-1]["built_up_m2"] == pytest.approx(10e6 + 4000, rel=1e-6)
        sdg = stats["sdg_11_3_1"]
        assert sdg["available"] is True and sdg["t2"] == "2024-04-01"
        years = sdg["years"]
        assert sdg["lcr"] == pytest.approx(math.log((10e6 + 4000) / 10e6) / years, rel=1e-3)
        assert sdg["ratio"] == pytest.approx(sdg["lcr"] / sdg["pgr"])
        # the freshness of the view (the fake state: half the city last seen clearly on
        # 2024-01-10, half never), long ago for today's clock
        fresh = stats["freshness"]
        assert fresh["available"] is True and fresh["layer"] == "last_clear_date"
        assert fresh["seen_clear_30d_share"] == 0.0 and fresh["seen_clear_90d_share"] == 0.0
        assert fresh["never_seen_clear_share"] == pytest.approx(0.5)
        lagos = client.get("/cities/lagos/stats").json()
        assert lagos["sdg_11_3_1"]["available"] is False
        assert "built_up_km2" in lagos["sdg_11_3_1"]["reason"]
        # without an external baseline or any alert there is nothing to draw (the series
        # no longer starts at the state's internal 2014 epoch)
        assert lagos["built_up_series"] == []
        assert client.get("/cities/stockholm/stats", params={"t1": "1999"}).status_code == 400

        tif = client.get("/cities/stockholm/maps/change-date.tif")
        assert tif.status_code == 200 and tif.headers["content-type"].startswith("image/tiff")
        with MemoryFile(tif.content) as mem, mem.open() as ds:
            assert ds.crs.to_epsg() == 32633 and ds.nodata == 0
            assert ds.transform == rasterio.Affine(10, 0, 674_000, 0, -10, 6_580_000)
            days = ds.read(1)
        assert int((days == 3700).sum()) == 8 and int((days > 0).sum()) == 8  # confirmed only
        both = client.get("/cities/stockholm/maps/change-date.tif",
                          params={"status": "confirmed,first"})
        with MemoryFile(both.content) as mem, mem.open() as ds:
            assert int((ds.read(1) > 0).sum()) == 9
        png = client.get("/cities/stockholm/maps/change-date.png", params={"status": "first"})
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.headers["x-change-date-range"] == "2024-05-28/2024-05-28"
        assert client.get("/cities/stockholm/maps/change-date.png",
                          params={"status": "gone"}).status_code == 400


def test_sse_stream_delivers_a_new_alert_to_a_connected_client(db: Database) -> None:
    seed_alerts(db)  # old alerts: not replayed to a client that connects now
    received: list[str] = []
    with serve(create_app(api_settings(), db)) as url:
        def publish_later() -> None:
            time.sleep(0.8)
            apply_change_event(db, make_change("stockholm", "new-scene", [
                rect_region("fresh", 5000, 5000, 60, 60)],
                acquired=datetime(2024, 9, 1, tzinfo=UTC)).data,
                rules=AlertRules(), alerts_topic=None)

        writer = threading.Thread(target=publish_later)
        with httpx.Client(timeout=httpx.Timeout(15, read=15)) as client, client.stream(
                "GET", f"{url}/alerts/stream", params={"city": "stockholm"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            writer.start()
            event_name = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event_name = line.removeprefix("event: ")
                elif line.startswith("data: ") and event_name == "alert":
                    received.append(line.removeprefix("data: "))
                    break
        writer.join()
    (payload,) = [json.loads(r) for r in received]
    assert payload["type"] == "org.urbanmonitor.alert.updated.v1"
    assert payload["data"]["first_detected"] == "2024-03-01"
    (record,) = db.alerts(city_id="stockholm", detected_from=date(2024, 3, 1),
                          detected_to=date(2024, 3, 1))
    assert payload["data"]["alert_id"] == record.id


def test_an_alert_feature_links_its_evidence(db: Database) -> None:
    """Each alert feature links its before/after chips and its observation timeline (the
    dashboard's evidence routes), so an analyst can verify it from the OGC item alone."""
    seed_alerts(db)
    with serve(create_app(api_settings(), db, FakeStore())) as url, httpx.Client(
            base_url=url, timeout=10) as client:
        items = client.get("/collections/alerts/items", params={"status": "all"}).json()
        feature = items["features"][0]
        links = {(link["rel"], link["href"].removeprefix(url)) for link in feature["links"]}
        root = f"/cities/{feature['properties']['city_id']}/alerts/{feature['id']}"
        assert ("preview", f"{root}/chips/before.png") in links
        assert ("preview", f"{root}/chips/after.png") in links
        assert ("describedby", f"{root}/evidence") in links


def test_every_revision_is_kept_with_its_links_and_its_evidence_is_served(db: Database) -> None:
    """AlertEvents link the OGC feature, the evidence and the chips of their own revision;
    every revision is kept with the scenes that made it, so an older revision's evidence is
    still served (issue 18); an unknown revision is a clear 404."""
    from dataclasses import replace

    rules, base = AlertRules(), "http://api.example:8000"
    first = rect_region("7", 0, 0, 50, 40, status="first", first=date(2024, 3, 1),
                        change=date(2024, 2, 20), confidence=0.5)
    (one,) = apply_change_event(db, make_change("stockholm", "S2A_0301", [first]).data,
                                rules=rules, alerts_topic=None, links_base=base)
    grown = rect_region("7", 0, 0, 80, 60, status="provisional", first=date(2024, 3, 1),
                        change=date(2024, 2, 20), confidence=0.85)
    (two,) = apply_change_event(
        db, make_change("stockholm", "S2A_0311", [grown],
                        acquired=datetime(2024, 3, 11, 10, tzinfo=UTC)).data,
        rules=rules, alerts_topic=None, links_base=base)
    alert_id = one.data.alert_id
    assert two.data.alert_id == alert_id and two.data.revision == 2
    root = f"{base}/cities/stockholm/alerts/{alert_id}"
    assert [(link.rel, link.href) for link in two.data.links] == [
        ("alternate", f"{base}/collections/alerts/items/{alert_id}"),
        ("evidence", f"{root}/evidence?revision=2"),
        ("preview", f"{root}/chips/before.png?revision=2"),
        ("preview", f"{root}/chips/after.png?revision=2")]
    rev1, rev2 = db.alert_revision(alert_id, 1), db.alert_revision(alert_id, 2)
    assert rev1 is not None and rev2 is not None and db.alert_revision(alert_id, 3) is None
    assert (rev1.alert.status, rev1.moved_by) == ("first", ("S2A_0301",))
    assert (rev2.alert.status, rev2.moved_by) == ("provisional", ("S2A_0311",))
    latest = db.get_alert(alert_id)
    assert latest is not None
    assert rev2.alert == replace(latest, created_at=None, updated_at=None)  # row == revision

    class LoggedState(FakeState):
        version = 4
        site_log = {7: [[3712, "s2", 20, 20, 0.81, 3.2, "first"]]}

    class LoggedStore:
        def load(self, city_id: str) -> FakeState | None:
            return LoggedState() if city_id == "stockholm" else None

    with serve(create_app(api_settings(), db, LoggedStore())) as url, httpx.Client(
            base_url=url, timeout=10) as client:
        path = f"/cities/stockholm/alerts/{alert_id}/evidence"
        now = client.get(path).json()
        assert (now["revision"], now["status"], now["moved_by"]) == (2, "provisional",
                                                                    ["S2A_0311"])
        old = client.get(path, params={"revision": 1}).json()
        assert (old["revision"], old["status"], old["moved_by"]) == (1, "first", ["S2A_0301"])
        missing = client.get(path, params={"revision": 9})
        assert missing.status_code == 404 and "no recorded revision 9" in missing.text
        assert client.get(path, params={"revision": 0}).status_code in (400, 422)
        # the SSE stream's AlertEvents link to this API
        with client.stream("GET", "/alerts/stream?since=2000-01-01T00:00:00Z") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    frame = json.loads(line[6:])
                    assert {link["rel"] for link in frame["data"]["links"]} == {
                        "alternate", "evidence", "preview"}
                    assert frame["data"]["links"][1]["href"].startswith(url)
                    break
