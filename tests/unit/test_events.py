"""Event contracts: round trips, deterministic ids, committed schemas, clear rejections."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest

from monitor.domain.events import (
    ALERT_TYPE,
    CHANGE_TYPE,
    SCENE_TYPE,
    AlertData,
    Asset,
    ChangeData,
    ChangeSite,
    SceneData,
    alert_event,
    change_event,
    json_schemas,
    parse_event,
    scene_event,
)
from monitor.errors import EventError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "monitor" / "schemas"


def make_scene(item_id: str = "S2A_31UDQ_20240101_0_L2A", city: str = "paris") -> SceneData:
    return SceneData(
        city_id=city, provider="earth-search", stac_api="https://example/v1",
        collection="sentinel-2-l2a", item_id=item_id, modality="s2",
        acquired=datetime(2024, 1, 1, 10, 56, tzinfo=UTC), bbox=[2.0, 48.0, 3.0, 49.0],
        assets={"red": Asset(href="s3://b/red.tif", key="red"),
                "nir": Asset(href="s3://b/nir.tif", key="nir"),
                "scl": Asset(href="s3://b/scl.tif", key="scl")},
        cloud_cover=12.5, processing_baseline="05.10", boa_offset=1000.0,
    )


def make_site() -> ChangeSite:
    return ChangeSite(
        site_id="17", geometry={"type": "Polygon", "coordinates": [[[2, 48], [2.001, 48], [2.001, 48.001], [2, 48]]]},
        bbox=[2, 48, 2.001, 48.001], status="provisional", n_pixels=12, area_m2=1200.0,
        first_detected=date(2024, 1, 1), change_date=date(2023, 12, 20), confidence=0.7)


def test_scene_event_round_trip_and_deterministic_id() -> None:
    a = scene_event(make_scene())
    b = scene_event(make_scene())
    assert a.id == b.id  # same fact, same id
    assert scene_event(make_scene(item_id="other")).id != a.id
    assert scene_event(make_scene(city="lyon")).id != a.id
    parsed = parse_event(a.to_json())
    assert parsed == a
    assert parsed.type == SCENE_TYPE and parsed.subject == "paris"
    body = json.loads(a.to_json())
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"


def test_change_and_alert_events_round_trip() -> None:
    change = change_event(ChangeData(
        city_id="paris", scene_event_id="abc", scene_ids=["S2A_x"], modality="s2",
        acquired=datetime(2024, 1, 1, tzinfo=UTC), model_version="s2-siamese-1.0.0",
        state_version=3, valid_fraction=0.8, pixels={"first": 3},
        transitions={"none->first": 3}, sites=[make_site()]))
    assert parse_event(change.to_json()) == change
    assert change.type == CHANGE_TYPE == "org.urbanmonitor.change.detected.v2"
    alert = alert_event(AlertData(
        alert_id="a1", city_id="paris", status="confirmed", revision=2,
        geometry=make_site().geometry or {}, area_m2=1200, first_detected=date(2024, 1, 1),
        confirmed=date(2024, 2, 1), confidence=0.9, model_version="m", scene_ids=["x"],
        site_id="17"))
    assert parse_event(alert.to_json(), ALERT_TYPE) == alert
    # a new revision is a new event, the same revision the same event
    assert alert_event(alert.data.model_copy(update={"revision": 3})).id != alert.id  # type: ignore[union-attr]


def test_committed_schemas_match_the_models() -> None:
    for name, schema in json_schemas().items():
        committed = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
        assert committed == json.loads(json.dumps(schema)), (
            f"{name}.json is stale: run `urban-monitor events schemas`")


def test_events_validate_against_their_json_schema() -> None:
    schemas = json_schemas()
    event = json.loads(scene_event(make_scene()).to_json())
    jsonschema.validate(event, schemas["scene-event.v1"])
    event["data"]["modality"] = "s3"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schemas["scene-event.v1"])


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "0.3", "id": "x"}', "specversion"),
        (b'{"specversion": "1.0", "id": "x", "type": "com.example.other"}', "unknown event type"),
    ],
)
def test_malformed_events_are_rejected_clearly(raw: bytes, words: str) -> None:
    with pytest.raises(EventError, match=words):
        parse_event(raw)


def test_missing_field_is_named() -> None:
    body = json.loads(scene_event(make_scene()).to_json())
    del body["data"]["item_id"]
    with pytest.raises(EventError) as info:
        parse_event(json.dumps(body))
    assert "data" not in str(info.value) or "item_id" in str(info.value)
    assert body["id"] in str(info.value)


def test_wrong_type_for_the_consumer_is_rejected() -> None:
    with pytest.raises(EventError, match="this consumer expects"):
        parse_event(scene_event(make_scene()).to_json(), ALERT_TYPE)


def test_a_change_event_that_moves_nothing_is_small() -> None:
    # ChangeEvent v2 is a delta: a scene that changes no site carries no site
    change = change_event(ChangeData(
        city_id="paris", scene_event_id="e" * 32, scene_ids=["S2A_MSIL2A_20240101T105431_N0510_R051_T31UDQ"],
        modality="s2", acquired=datetime(2024, 1, 1, tzinfo=UTC),
        model_version="change_dual@2.0.0+abcdef12", state_version=812, valid_fraction=0.43,
        pixels={"first": 1200, "provisional": 300, "confirmed": 40000, "retracted": 9000,
                "withdrawn": 0}))
    assert len(change.to_json()) < 4096


def test_alert_events_with_links_validate_against_the_committed_schema() -> None:
    from monitor.domain.events import AlertLink

    alert = alert_event(AlertData(
        alert_id="a1", city_id="c", status="confirmed", revision=2,
        geometry={"type": "Point", "coordinates": [0, 0]}, area_m2=1.0,
        first_detected=date(2024, 1, 1), confidence=0.9, model_version="m", scene_ids=["x"],
        links=[AlertLink(href="http://h/cities/c/alerts/a1/evidence?revision=2",
                         rel="evidence", type="application/json")]))
    schema = json.loads((SCHEMA_DIR / "alert-event.v1.json").read_text())
    jsonschema.validate(json.loads(alert.to_json()), schema)
    bad = json.loads(alert.to_json())
    bad["data"]["links"][0].pop("href")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
