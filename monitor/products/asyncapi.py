"""The AsyncAPI 3.0 document of the event interfaces: the Kafka topics (scenes, changes,
alerts, dead letters), the webhooks and the Server-Sent Events stream, with the event
schemas of ``monitor/schemas/`` as message payloads (what ``/openapi.json`` is for HTTP,
served at ``/asyncapi.json``).

Every message is a CloudEvents 1.0 event; on Kafka in structured content mode
(``content-type: application/cloudevents+json``, the record key = the city id), on
webhooks as the POST body, on the SSE stream as the ``data`` of an ``alert`` event.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from monitor.domain.events import (
    ALERT_TYPE,
    CHANGE_TYPE,
    COVERAGE_GAP_TYPE,
    DEAD_LETTER_TYPE,
    SCENE_TYPE,
    SCHEMA_NAMES,
)
from monitor.settings import Settings

ASYNCAPI_VERSION = "3.0.0"
CLOUDEVENTS_JSON = "application/cloudevents+json"
KAFKA_BINDING_VERSION = "0.5.0"
_SCHEMA_KEYS = {SCENE_TYPE: "SceneEvent", CHANGE_TYPE: "ChangeEvent", ALERT_TYPE: "AlertEvent",
                DEAD_LETTER_TYPE: "DeadLetterEvent", COVERAGE_GAP_TYPE: "CoverageGapEvent"}


def event_schema(event_type: str) -> dict[str, Any]:
    """The committed JSON Schema of an event type (``monitor/schemas/<name>.json``)."""
    name = SCHEMA_NAMES[event_type]
    text = resources.files("monitor").joinpath("schemas", f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _rebased(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema with its ``#/$defs/...`` references pointing inside the AsyncAPI
    document (``#/components/schemas/<key>/$defs/...``)."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = f"#/components/schemas/{key}/$defs/{ref[len('#/$defs/'):]}"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    out.pop("$schema", None)
    return out


def _webhook_headers() -> dict[str, Any]:
    """The webhook request headers, as ``monitor.adapters.webhooks`` names them."""
    from monitor.adapters import webhooks

    names = sorted({str(v) for k, v in vars(webhooks).items()
                    if k.endswith("_HEADER") and isinstance(v, str)})
    return {"type": "object",
            "properties": {name: {"type": "string", "description": f"see {webhooks.__name__}"}
                           for name in names}}


def _message(event_type: str, title: str, summary: str) -> dict[str, Any]:
    key = _SCHEMA_KEYS[event_type]
    return {
        "name": key, "title": title, "summary": summary, "contentType": CLOUDEVENTS_JSON,
        "payload": {"$ref": f"#/components/schemas/{key}"},
        "headers": {"type": "object", "properties": {
            "content-type": {"type": "string", "const": CLOUDEVENTS_JSON,
                             "description": "CloudEvents Kafka binding, structured mode"}}},
        "bindings": {"kafka": {"key": {"type": "string", "description": "the city id (one "
                                       "city -> one partition -> ordered)"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
        "externalDocs": {"url": f"https://urban-monitor.github.io/schemas/"
                                f"{SCHEMA_NAMES[event_type]}.json",
                         "description": f"CloudEvents type {event_type}"},
    }


def _topic(address: str, message: str, description: str, partitions: int) -> dict[str, Any]:
    return {"address": address, "description": description,
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
            "servers": [{"$ref": "#/servers/kafka"}],
            "bindings": {"kafka": {"topic": address, "partitions": partitions,
                                   "bindingVersion": KAFKA_BINDING_VERSION}}}


def asyncapi_document(settings: Settings, api_host: str | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of this deployment (topic names from ``settings.bus``)."""
    b = settings.bus
    host = api_host or f"{settings.api.host}:{settings.api.port}"
    schemas = {key: _rebased(event_schema(t), key) for t, key in _SCHEMA_KEYS.items()}
    messages = {
        "SceneEvent": _message(SCENE_TYPE, "Scene discovered",
                               "a new acquisition over a city, ready for inference"),
        "ChangeEvent": _message(CHANGE_TYPE, "Change detected (v2)",
                                "what one scene changed in a city's state: the sites it "
                                "moved (a delta)"),
        "AlertEvent": _message(ALERT_TYPE, "Alert updated",
                               "a new revision of an urban change alert (a site)"),
        "DeadLetterEvent": _message(DEAD_LETTER_TYPE, "Dead letter",
                                    "a record a consumer could not process, with the reason"),
        "CoverageGapEvent": _message(COVERAGE_GAP_TYPE, "Coverage gap opened or closed",
                                     "expected acquisitions of a source over a city not "
                                     "listed within the grace period (opened), or the "
                                     "source listing again (closed)"),
    }
    webhook = {**messages["AlertEvent"], "name": "AlertWebhook",
               "title": "Alert webhook delivery", "contentType": "application/json",
               "headers": _webhook_headers(),
               "summary": "the AlertEvent as the body of a signed POST to each matching "
                          "subscription's URL (retried with backoff, from the outbox)"}
    webhook.pop("bindings")
    sse = {**messages["AlertEvent"], "name": "AlertStreamEvent",
           "title": "Alert stream event", "contentType": "text/event-stream",
           "summary": "an SSE event 'alert' whose data is the AlertEvent JSON and whose id "
                      "is the event id", "headers": {"type": "object", "properties": {}}}
    sse.pop("bindings")
    messages.update({"AlertWebhook": webhook, "AlertStreamEvent": sse})
    channels = {
        "scenes": _topic(b.scenes_topic, "SceneEvent", "discovered scenes (scheduler -> "
                         f"inference group '{b.inference_group}')", b.partitions),
        "changes": _topic(b.changes_topic, "ChangeEvent", "per-scene state deltas "
                          f"(inference -> alerting group '{b.alerting_group}')", b.partitions),
        "alerts": _topic(b.alerts_topic, "AlertEvent", "alert revisions (alerting -> "
                         "subscribers, digital twins)", b.partitions),
        "deadLetters": _topic(b.dead_letter_topic, "DeadLetterEvent",
                              "records that failed, with the reason", b.partitions),
        "coverage": _topic(settings.coverage.topic, "CoverageGapEvent", "coverage gaps "
                           "(scheduler -> operators, subscribers)", b.partitions),
        "alertStream": {
            "address": "/alerts/stream", "servers": [{"$ref": "#/servers/api"}],
            "description": "Server-Sent Events, filters city, status, since "
                           "(GET /alerts/stream; see /openapi.json)",
            "messages": {"AlertStreamEvent": {"$ref": "#/components/messages/AlertStreamEvent"}}},
        "webhooks": {
            "address": None,
            "description": "each subscription's own URL (POST /subscriptions registers one)",
            "messages": {"AlertWebhook": {"$ref": "#/components/messages/AlertWebhook"}},
            "servers": [{"$ref": "#/servers/subscriber"}]},
    }

    def op(action: str, channel: str, summary: str) -> dict[str, Any]:
        return {"action": action, "channel": {"$ref": f"#/channels/{channel}"},
                "summary": summary}

    operations = {
        "publishScenes": op("send", "scenes", "the scheduler publishes discovered scenes"),
        "consumeScenes": op("receive", "scenes", "inference workers consume scenes"),
        "publishChanges": op("send", "changes", "inference workers publish state deltas"),
        "consumeChanges": op("receive", "changes", "the alerting consumes state deltas"),
        "publishAlerts": op("send", "alerts", "the alerting publishes alert revisions"),
        "publishDeadLetters": op("send", "deadLetters", "any consumer dead-letters a record"),
        "publishCoverageGaps": op("send", "coverage", "the scheduler publishes coverage gaps "
                                                      "as they open and close"),
        "streamAlerts": op("send", "alertStream", "the API streams alert revisions"),
        "deliverWebhooks": op("send", "webhooks", "the outbox dispatcher posts alert "
                                                  "revisions to subscribers"),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:urban-monitor:events",
        "info": {"title": f"{settings.api.title} events", "version": "1.0.0",
                 "description": "CloudEvents 1.0 of the Urban Monitor pipeline: Kafka topics "
                                "(CloudEvents Kafka binding, structured mode), webhooks and "
                                "the Server-Sent Events stream.",
                 "license": {"name": "Apache-2.0",
                             "url": "https://www.apache.org/licenses/LICENSE-2.0"}},
        "defaultContentType": CLOUDEVENTS_JSON,
        "servers": {
            "kafka": {"host": b.bootstrap_servers, "protocol": "kafka",
                      "description": "the Kafka cluster (bus.bootstrap_servers)"},
            "api": {"host": host, "protocol": "http", "description": "the HTTP API"},
            "subscriber": {"host": "{host}", "protocol": "https",
                           "description": "a webhook subscriber",
                           "variables": {"host": {"description": "the subscription URL's "
                                                                 "host"}}},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
