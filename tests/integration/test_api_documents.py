"""The API's machine-readable documents: the OpenAPI document is OpenAPI 3.0 (as the
oas30 conformance class says) and valid, every parameter of the OGC items routes is
documented, the collections' temporal extents are filled, alert features carry
``scene_ids`` as an array; the AsyncAPI 3.0 document of the events is served, valid, and
its message schemas validate real events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from monitor.adapters.database import Database
from monitor.domain.events import (
    Asset,
    DeadLetterData,
    SceneData,
    dead_letter_event,
    scene_event,
)
from monitor.pipeline.alerting import record_to_event
from services.api import create_app
from tests.integration.alerting_fixtures import serve
from tests.integration.test_api import api_settings, seed_alerts


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, Database]]:
    db = Database(f"sqlite:///{tmp_path / 'docs.db'}")
    db.init_schema()
    seed_alerts(db)
    with serve(create_app(api_settings(), db)) as url:
        yield url, db
    db.dispose()


def test_openapi_is_3_0_valid_and_documents_every_items_parameter(
        api: tuple[str, Database]) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    url, _ = api
    doc = httpx.get(f"{url}/openapi.json").json()
    assert doc["openapi"].startswith("3.0.")
    conformance = httpx.get(f"{url}/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30" in conformance
    validate(doc, cls=OpenAPIV30SpecValidator)
    for path in ("/collections/{cid}/items", "/collections/{cid}/items/{fid}",
                 "/collections/{cid}"):
        parameters = doc["paths"][path]["get"]["parameters"]
        undocumented = [p["name"] for p in parameters if not p.get("description")]
        assert not undocumented, (path, undocumented)
    names = {p["name"] for p in doc["paths"]["/collections/{cid}/items"]["get"]["parameters"]}
    assert {"cid", "bbox", "bbox-crs", "datetime", "limit", "offset", "status", "city",
            "f"} <= names


def test_collections_have_temporal_extents_and_scene_ids_are_arrays(
        api: tuple[str, Database]) -> None:
    url, db = api
    collections = {c["id"]: c for c in httpx.get(f"{url}/collections").json()["collections"]}
    alerts = db.alerts(limit=None)
    first = min(a.first_detected for a in alerts).isoformat()
    last = max(a.first_detected for a in alerts).isoformat()
    assert collections["alerts"]["extent"]["temporal"]["interval"] == [
        [f"{first}T00:00:00Z", f"{last}T00:00:00Z"]]
    assert collections["cities"]["extent"]["temporal"]["interval"] == [
        [f"{first}T00:00:00Z", None]]
    features = httpx.get(f"{url}/collections/alerts/items").json()["features"]
    assert features and all(isinstance(f["properties"]["scene_ids"], list) for f in features)
    assert features[0]["properties"]["scene_ids"] == list(
        db.get_alert(features[0]["id"]).scene_ids)  # type: ignore[union-attr]


def _validator(doc: dict[str, Any], key: str) -> jsonschema.Draft202012Validator:
    registry: Registry = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    schema = {"$ref": f"urn:asyncapi#/components/schemas/{key}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_asyncapi_document_is_valid_and_its_schemas_validate_real_events(
        api: tuple[str, Database]) -> None:
    from asyncapi3 import AsyncAPI3

    url, db = api
    doc = httpx.get(f"{url}/asyncapi.json").json()
    assert doc["asyncapi"] == "3.0.0"
    AsyncAPI3.model_validate(doc)  # the AsyncAPI 3.0 object model (pydantic)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {"urban.scenes.v1", "urban.changes.v2", "urban.alerts.v1", "urban.deadletter.v1",
            "/alerts/stream", None} <= addresses
    assert doc["channels"]["changes"]["messages"]["ChangeEvent"]["$ref"] == (
        "#/components/messages/ChangeEvent")
    assert doc["defaultContentType"] == "application/cloudevents+json"
    # every reference resolves, and the message payloads validate real events
    scene = scene_event(SceneData(
        city_id="lagos", provider="p", stac_api="http://x", collection="c", item_id="i",
        modality="s2", acquired=datetime(2024, 1, 1, tzinfo=UTC), bbox=[0, 0, 1, 1],
        assets={"red": Asset(href="/r.tif", key="red")}))
    alert = record_to_event(db.alerts(limit=1)[0])
    dead = dead_letter_event(DeadLetterData(
        reason="test", error_type="X", original_topic="urban.scenes.v1", original_key="lagos",
        original_value=scene.to_json().decode(), failed_at=datetime(2024, 1, 2, tzinfo=UTC)),
        subject="lagos")
    for key, event in (("SceneEvent", scene), ("AlertEvent", alert), ("DeadLetterEvent", dead)):
        _validator(doc, key).validate(event.model_dump(mode="json", exclude_none=True))
    with pytest.raises(jsonschema.ValidationError):
        _validator(doc, "AlertEvent").validate(scene.model_dump(mode="json", exclude_none=True))
