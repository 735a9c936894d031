"""One contract, two buses: the embedded bus and a real Apache Kafka broker behave alike.

Every test runs twice (``bus`` is parametrised). Kafka topics get unique names.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.bus_kafka import KafkaBus
from monitor.domain.events import (
    DEAD_LETTER_TYPE,
    SCENE_TYPE,
    Asset,
    CloudEvent,
    SceneData,
    parse_event,
    scene_event,
)
from monitor.errors import SceneReadError
from monitor.pipeline.consuming import EventLoop
from monitor.ports import Bus, Consumer, Message

PARTITIONS = 4


@pytest.fixture(params=["embedded", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "embedded":
        instance: Bus = EmbeddedBus(default_partitions=PARTITIONS)
    else:
        instance = KafkaBus(request.getfixturevalue("kafka_bootstrap"),
                            client_id=f"test-{uuid.uuid4().hex[:6]}")
    yield instance
    instance.close()


@pytest.fixture
def topics(bus: Bus) -> Callable[..., list[str]]:
    def make(*names: str) -> list[str]:
        out = [f"test.{name}.{uuid.uuid4().hex[:10]}" for name in names]
        bus.ensure_topics(out, PARTITIONS)
        return out
    return make


def drain(consumers: list[Consumer], expected: int, timeout_s: float = 60.0,
          commit: bool = True) -> dict[int, list[Message]]:
    """Poll all members until ``expected`` records arrived in total; per-member results."""
    got: dict[int, list[Message]] = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    while sum(len(v) for v in got.values()) < expected and time.monotonic() < deadline:
        for i, consumer in enumerate(consumers):
            for message in consumer.poll(timeout_s=0.2):
                got[i].append(message)
                if commit:
                    consumer.commit(message)
    return got


def scene(city: str, n: int) -> CloudEvent:
    return scene_event(SceneData(
        city_id=city, provider="p", stac_api="http://x", collection="c", item_id=f"item-{n}",
        modality="s2", acquired=datetime(2024, 1, 1, tzinfo=UTC), bbox=[0, 0, 1, 1],
        assets={"red": Asset(href="/r.tif", key="red")}))


def test_records_of_one_key_stay_in_order_on_one_partition(bus: Bus, topics: Callable[..., list[str]]) -> None:
    (topic,) = topics("order")
    for n in range(30):
        bus.publish(topic, f"city-{n % 3}", json.dumps({"n": n}).encode())
    bus.flush()
    consumer = bus.consumer([topic], group_id=f"g-{uuid.uuid4().hex[:6]}")
    got = drain([consumer], 30)[0]
    assert len(got) == 30
    by_key: dict[str | None, list[Message]] = {}
    for message in got:
        by_key.setdefault(message.key, []).append(message)
    for key, messages in by_key.items():
        assert len({m.partition for m in messages}) == 1, f"key {key} spread over partitions"
        numbers = [json.loads(m.value)["n"] for m in messages]
        assert numbers == sorted(numbers)
    consumer.close()


def test_committed_records_are_not_redelivered_uncommitted_are(bus: Bus, topics: Callable[..., list[str]]) -> None:
    (topic,) = topics("commit")
    group = f"g-{uuid.uuid4().hex[:6]}"
    for n in range(10):
        bus.publish(topic, "city-a", str(n).encode())
    bus.flush()
    first = bus.consumer([topic], group_id=group)
    got = drain([first], 10, commit=False)[0]
    assert len(got) == 10
    for message in got[:6]:
        first.commit(message)
    first.close()
    second = bus.consumer([topic], group_id=group)
    again = drain([second], 4)[0]
    assert sorted(int(m.value) for m in again) == [6, 7, 8, 9]
    second.close()


def test_two_members_split_partitions_and_process_each_record_once(
        bus: Bus, topics: Callable[..., list[str]]) -> None:
    (topic,) = topics("group")
    group = f"g-{uuid.uuid4().hex[:6]}"
    a = bus.consumer([topic], group_id=group, client_id="member-a")
    b = bus.consumer([topic], group_id=group, client_id="member-b")
    # Wait for the group to settle with both members owning partitions.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        a.poll(timeout_s=0.2)
        b.poll(timeout_s=0.2)
        if a.assignment() and b.assignment() and len(a.assignment() | b.assignment()) == PARTITIONS:
            break
    assert a.assignment() and b.assignment(), "both members should own partitions"
    assert not (a.assignment() & b.assignment()), "a partition must have one owner"
    assert len(a.assignment() | b.assignment()) == PARTITIONS
    keys = [f"city-{i}" for i in range(20)]
    for n in range(200):
        bus.publish(topic, keys[n % len(keys)], str(n).encode())
    bus.flush()
    got = drain([a, b], 200)
    values = [int(m.value) for ms in got.values() for m in ms]
    assert sorted(values) == list(range(200)), "every record processed exactly once"
    assert got[0] and got[1], "both members did work"
    for member, messages in got.items():
        owned = (a if member == 0 else b).assignment()
        assert {(m.topic, m.partition) for m in messages} <= owned
    a.close()
    b.close()


def test_rewind_redelivers(bus: Bus, topics: Callable[..., list[str]]) -> None:
    (topic,) = topics("rewind")
    bus.publish(topic, "k", b"one")
    bus.publish(topic, "k", b"two")
    bus.flush()
    consumer = bus.consumer([topic], group_id=f"g-{uuid.uuid4().hex[:6]}")
    got = drain([consumer], 2, commit=False)[0]
    consumer.rewind(got[0])
    again = drain([consumer], 2, commit=False)[0]
    assert [m.value for m in again] == [b"one", b"two"]
    consumer.close()


def test_event_loop_dead_letters_bad_records_and_goes_on(bus: Bus, topics: Callable[..., list[str]]) -> None:
    scenes, dead = topics("scenes", "dead")
    group = f"g-{uuid.uuid4().hex[:6]}"
    handled: list[str] = []

    def handler(event: CloudEvent, message: Message) -> None:
        if event.data.item_id == "item-2":  # type: ignore[union-attr]
            raise SceneReadError("item-2", "asset red is not a GeoTIFF")
        handled.append(event.data.item_id)  # type: ignore[union-attr]

    bus.publish(scenes, "paris", scene("paris", 1).to_json())
    bus.publish(scenes, "paris", b"{this is not json")
    bus.publish(scenes, "paris", scene("paris", 2).to_json())
    bus.publish(scenes, "paris", json.dumps({"specversion": "1.0", "id": "x", "type": SCENE_TYPE,
                                             "source": "s", "subject": "paris", "time": "2024-01-01T00:00:00Z",
                                             "data": {"city_id": "paris"}}).encode())
    bus.publish(scenes, "paris", scene("paris", 3).to_json())
    bus.flush()
    loop = EventLoop(bus, bus.consumer([scenes], group_id=group), handler,
                     expected_type=SCENE_TYPE, dead_letter_topic=dead, group=group)
    deadline = time.monotonic() + 60
    while loop.stats.processed + loop.stats.dead_lettered < 5 and time.monotonic() < deadline:
        loop.run_once(timeout_s=0.3)
    assert handled == ["item-1", "item-3"]
    assert loop.stats.dead_lettered == 3
    loop.consumer.close()

    reader = bus.consumer([dead], group_id=f"g-{uuid.uuid4().hex[:6]}")
    letters = [parse_event(m.value, DEAD_LETTER_TYPE) for ms in drain([reader], 3).values() for m in ms]
    reasons = sorted(letter.data.error_type for letter in letters)  # type: ignore[union-attr]
    assert reasons == ["EventError", "EventError", "SceneReadError"]
    for letter in letters:
        assert letter.data.original_topic == scenes  # type: ignore[union-attr]
        assert letter.data.reason  # type: ignore[union-attr]
    reader.close()


def test_event_loop_retries_infrastructure_failures_without_losing(bus: Bus, topics: Callable[..., list[str]]) -> None:
    from monitor.errors import DatabaseError

    scenes, dead = topics("retry", "dead")
    group = f"g-{uuid.uuid4().hex[:6]}"
    down = threading.Event()
    down.set()
    handled: list[str] = []

    def handler(event: CloudEvent, message: Message) -> None:
        if down.is_set():
            raise DatabaseError("database is unavailable", "retry")
        handled.append(event.data.item_id)  # type: ignore[union-attr]

    for n in range(3):
        bus.publish(scenes, "rome", scene("rome", n).to_json())
    bus.flush()
    loop = EventLoop(bus, bus.consumer([scenes], group_id=group), handler, expected_type=SCENE_TYPE,
                     dead_letter_topic=dead, group=group, backoff_s=0.01, max_backoff_s=0.05)
    deadline = time.monotonic() + 30
    while loop.stats.retried < 3 and time.monotonic() < deadline:
        loop.run_once(timeout_s=0.3)
    assert handled == [] and loop.stats.retried >= 3
    down.clear()  # the database is back
    while len(handled) < 3 and time.monotonic() < deadline + 30:
        loop.run_once(timeout_s=0.3)
    assert handled == ["item-0", "item-1", "item-2"]
    assert loop.stats.dead_lettered == 0
    loop.consumer.close()
