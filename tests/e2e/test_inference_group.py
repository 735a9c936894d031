"""Issue 6 end to end on real Kafka: two inference workers in one consumer group over two
cities give exactly the result of one worker; a worker that leaves mid-stream hands its
cities over and the final state is still the same, with no duplicate change event.
(kill -9 of a worker process is in the fault suite: tests/e2e/test_faults.py.)"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from monitor.adapters.bus_kafka import KafkaBus
from monitor.adapters.database import Database
from monitor.adapters.state_store import StateStore
from monitor.domain.city import City
from monitor.domain.events import CHANGE_TYPE, parse_event, scene_event
from monitor.pipeline.runtime import Runtime, build_inference_loop, build_worker
from monitor.settings import CONFIG_DIR, load_settings
from monitor.synthetic.archive import Archive
from tests.integration.inference_fixtures import register, scene_from_item

CITIES = ("city-a", "city-b")


def scene_events(archive: Archive) -> list:
    items = sorted(archive.items("sentinel-2-l2a")[:10] + archive.items("sentinel-1-rtc")[:6],
                   key=lambda i: i["properties"]["datetime"])
    events = []
    for city in CITIES:
        for item in items:
            base = scene_from_item(item, city)
            events.append(scene_event(base.data))
    return events


def run_group(kafka: str, archive: Archive, root: Path, n_workers: int, *,
              leave_after: int | None = None) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        CONFIG_DIR / "demo.yaml",
        bus={"kind": "kafka", "bootstrap_servers": kafka, "partitions": 4,
             "scenes_topic": f"e2e.scenes.{tag}", "changes_topic": f"e2e.changes.{tag}",
             "dead_letter_topic": f"e2e.dead.{tag}", "inference_group": f"inference-{tag}"},
        database={"url": f"sqlite:///{root / tag / 'db.sqlite'}"},
        state={"url": str(root / tag / "state")})
    bus = KafkaBus(kafka, client_id=f"e2e-{tag}")
    db = Database(settings.database.url)
    db.init_schema()
    cities = {c: City(c, c, archive.aoi, archive.grid) for c in CITIES}
    runtime = Runtime(settings=settings, bus=bus, db=db, cities=cities)
    bus.ensure_topics(runtime.topics(), settings.bus.partitions)
    loops = [build_inference_loop(runtime, build_worker(runtime), client_id=f"w{i}") for i in range(n_workers)]
    # Let the group settle before anything is published, so every member owns partitions
    # (the topic is empty: these polls deliver nothing).
    settle = time.monotonic() + 60
    while time.monotonic() < settle:
        for loop in loops:
            assert loop.consumer.poll(timeout_s=0.2) == []
        owned = [loop.consumer.assignment() for loop in loops]
        if all(owned) and len(set().union(*owned)) == settings.bus.partitions:
            break
    events = scene_events(archive)
    for event in events:
        register(runtime, event)
        bus.publish(settings.bus.scenes_topic, event.data.city_id, event.to_json())
    done = 0
    deadline = time.monotonic() + 240
    left = False
    while time.monotonic() < deadline:
        for loop in list(loops):
            done += loop.run_once(timeout_s=0.3, max_records=5)
        if leave_after is not None and not left and done >= leave_after:
            loops[0].consumer.close()  # this worker stops: the group rebalances
            loops = loops[1:]
            left = True
        counts = db.scene_counts()
        if counts.get("processed", 0) + counts.get("skipped", 0) == len(events):
            break
    counts = db.scene_counts()
    assert counts.get("processed", 0) + counts.get("skipped", 0) == len(events), counts
    if n_workers > 1 and leave_after is None:
        worked = [loop.stats.processed for loop in loops]
        assert all(n > 0 for n in worked), f"every member should have owned a city: {worked}"
    for loop in loops:
        loop.consumer.close()
    store = StateStore(settings.state.url)
    states = {c: store.load(c).to_arrays() for c in CITIES}  # type: ignore[union-attr]
    reader = bus.consumer([settings.bus.changes_topic], group_id=f"reader-{tag}")
    change_ids: list[str] = []
    quiet = time.monotonic() + 60
    while time.monotonic() < quiet:
        batch = reader.poll(timeout_s=1.0)
        change_ids += [parse_event(m.value, CHANGE_TYPE).id for m in batch]
        if not batch and change_ids:
            break
    reader.close()
    bus.close()
    db.dispose()
    return states, change_ids


@pytest.mark.slow
def test_two_workers_equal_one_and_survive_a_member_leaving(
        kafka_bootstrap: str, small_archive: Archive, tmp_path: Path) -> None:
    one_states, one_changes = run_group(kafka_bootstrap, small_archive, tmp_path, 1)
    two_states, two_changes = run_group(kafka_bootstrap, small_archive, tmp_path, 2)
    left_states, left_changes = run_group(kafka_bootstrap, small_archive, tmp_path, 2,
                                          leave_after=8)
    assert one_changes, "change events were published"
    assert len(one_changes) == len(set(one_changes))
    for states, changes in ((two_states, two_changes), (left_states, left_changes)):
        assert sorted(changes) == sorted(one_changes), "same change events, none duplicated"
        for city in CITIES:
            for name, array in one_states[city].items():
                np.testing.assert_array_equal(array, states[city][name], err_msg=f"{city} {name}")
