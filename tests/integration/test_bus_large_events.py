"""Large events on a real Kafka broker: a city with years of change regions makes
ChangeEvents of several MB. They must pass (gzip, 16 MiB limit), and one too large for the
bus must be dead-lettered with a clear reason instead of blocking its partition forever."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from monitor.adapters.bus_kafka import MAX_MESSAGE_BYTES, KafkaBus
from monitor.domain.events import DEAD_LETTER_TYPE, SCENE_TYPE, CloudEvent, parse_event
from monitor.errors import EventTooLargeError
from monitor.pipeline.consuming import EventLoop
from monitor.ports import Message
from tests.integration.test_bus_contract import drain, scene


@pytest.fixture
def kafka(kafka_bootstrap: str) -> Iterator[KafkaBus]:
    bus = KafkaBus(kafka_bootstrap, client_id=f"test-large-{uuid.uuid4().hex[:6]}")
    yield bus
    bus.close()


def _regions_json(megabytes: float) -> bytes:
    """A ChangeEvent-like payload: many polygons with 1e-7 degree coordinates."""
    rng = np.random.default_rng(0)
    regions, size = [], 0
    while size < megabytes * 1e6:
        ring = (rng.random((40, 2)) * 0.01 + [36.8, -1.3]).round(7).tolist()
        regions.append({"region_id": uuid.uuid4().hex[:20], "status": "retracted",
                        "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
        size += 1000
    return json.dumps({"regions": regions}).encode()


def test_a_three_megabyte_event_passes_intact(kafka: KafkaBus) -> None:
    topic = f"test.large.{uuid.uuid4().hex[:10]}"
    kafka.ensure_topics([topic], 1)
    value = _regions_json(3.0)
    assert len(value) > 2 * 1024 * 1024  # above Kafka's 1 MB default
    kafka.publish(topic, "nairobi", value)
    reader = kafka.consumer([topic], group_id=f"g-{uuid.uuid4().hex[:6]}")
    got = [m for ms in drain([reader], 1).values() for m in ms]
    assert len(got) == 1 and got[0].value == value and got[0].key == "nairobi"
    reader.close()


def test_an_event_over_the_limit_is_a_clear_permanent_error(kafka: KafkaBus) -> None:
    topic = f"test.large.{uuid.uuid4().hex[:10]}"
    kafka.ensure_topics([topic], 1)
    with pytest.raises(EventTooLargeError) as info:
        kafka.publish(topic, "nairobi", b"x" * (MAX_MESSAGE_BYTES + 1024))
    text = str(info.value)
    assert "nairobi" in text and topic in text and "16.8 MB" in text
    assert "message.max.bytes" in text and "re-publish" in text


def test_the_loop_dead_letters_a_record_whose_output_is_too_large_and_goes_on(
    kafka: KafkaBus,
) -> None:
    scenes, changes, dead = (f"test.{n}.{uuid.uuid4().hex[:10]}"
                             for n in ("scenes", "changes", "dead"))
    kafka.ensure_topics([scenes, changes, dead], 1)
    group = f"g-{uuid.uuid4().hex[:6]}"
    published: list[str] = []

    def handler(event: CloudEvent, message: Message) -> None:
        item = event.data.item_id  # type: ignore[union-attr]
        size = MAX_MESSAGE_BYTES + 1 if item == "item-2" else 100
        kafka.publish(changes, "paris", b"y" * size)
        published.append(item)

    for n in (1, 2, 3):
        kafka.publish(scenes, "paris", scene("paris", n).to_json())
    loop = EventLoop(kafka, kafka.consumer([scenes], group_id=group), handler,
                     expected_type=SCENE_TYPE, dead_letter_topic=dead, group=group)
    deadline = time.monotonic() + 60
    while loop.stats.processed + loop.stats.dead_lettered < 3 and time.monotonic() < deadline:
        loop.run_once(timeout_s=0.3)
    assert published == ["item-1", "item-3"]  # the partition was not blocked by item-2
    assert loop.stats.processed == 2 and loop.stats.dead_lettered == 1
    loop.consumer.close()
    reader = kafka.consumer([dead], group_id=f"g-{uuid.uuid4().hex[:6]}")
    letters = [parse_event(m.value, DEAD_LETTER_TYPE) for ms in drain([reader], 1).values()
               for m in ms]
    assert [letter.data.error_type for letter in letters] == ["EventTooLargeError"]  # type: ignore[union-attr]
    assert "message.max.bytes" in letters[0].data.reason  # type: ignore[union-attr]
    reader.close()
