"""The CloudEvents Kafka protocol binding, structured content mode: every record the bus
publishes carries ``content-type: application/cloudevents+json`` and the whole event as
its value. A record read back from the real broker parses with the CloudEvents SDK
(``cloudevents.core.bindings.kafka``) into the event that was published."""

from __future__ import annotations

import uuid

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, from_structured
from cloudevents.core.formats.json import JSONFormat
from kafka import KafkaConsumer

from monitor.adapters.bus_kafka import CLOUDEVENTS_CONTENT_TYPE, KafkaBus
from monitor.domain.events import parse_event
from tests.integration.test_bus_contract import scene


def test_records_are_structured_mode_cloudevents(kafka_bootstrap: str) -> None:
    topic = f"test-binding-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(kafka_bootstrap, client_id="test-binding")
    try:
        bus.ensure_topics([topic], 1)
        event = scene("lagos", 0)
        bus.publish(topic, "lagos", event.to_json())
        bus.publish_many(topic, [("lagos", scene("lagos", 1).to_json())])
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 group_id=f"binding-{uuid.uuid4().hex[:6]}",
                                 consumer_timeout_ms=20000)
        records = []
        for record in consumer:
            records.append(record)
            if len(records) == 2:
                break
        consumer.close()
    finally:
        bus.close()
    assert len(records) == 2
    for record in records:
        headers = dict(record.headers)
        assert headers["content-type"] == CLOUDEVENTS_CONTENT_TYPE.encode()
        assert not any(k.startswith("ce_") for k in headers)  # structured, not binary mode
    first = records[0]
    message = KafkaMessage(headers=dict(first.headers), key=first.key, value=first.value)
    parsed = from_kafka(message, JSONFormat())  # the SDK detects structured mode
    same = from_structured(message, JSONFormat())
    ours = parse_event(first.value)
    assert parsed.get_id() == same.get_id() == event.id == ours.id
    assert parsed.get_type() == event.type and parsed.get_source() == event.source
    assert parsed.get_subject() == "lagos"
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_dataschema() == event.dataschema
    assert parsed.get_extension("partitionkey") == "lagos"  # the record key: the city
    data = parsed.get_data()
    assert isinstance(data, dict) and data["item_id"] == event.data.item_id  # type: ignore[union-attr]
