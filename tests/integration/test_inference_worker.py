"""The inference worker on real COGs of a small synthetic archive, with the shipped models:
exactly-once effect, every kind of bad scene gets a clear outcome, and the worker goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from monitor.adapters.state_store import StateStore
from monitor.domain.events import CHANGE_TYPE, SCENE_TYPE, SceneData, parse_event
from monitor.pipeline.runtime import (
    Runtime,
    build_inference_loop,
    build_worker,
    republish_unfinished,
)
from monitor.synthetic.archive import Archive
from tests.integration.inference_fixtures import register, scene_from_item


def events_for(archive: Archive, collection: str, n: int | None = None) -> list:
    items = sorted(archive.items(collection), key=lambda i: i["properties"]["datetime"])
    return [scene_from_item(item, "tiny") for item in items[:n]]


def change_events(rt: Runtime) -> list:
    return [parse_event(m.value, CHANGE_TYPE)
            for m in rt.bus.records(rt.settings.bus.changes_topic)]  # type: ignore[attr-defined]


def drain(loop) -> None:  # type: ignore[no-untyped-def]
    while loop.run_once(timeout_s=0.0):
        pass


def test_scenes_update_the_state_and_emit_change_events(runtime: Runtime, small_archive: Archive) -> None:
    worker = build_worker(runtime)
    events = events_for(small_archive, "sentinel-2-l2a", 12) + events_for(small_archive, "sentinel-1-rtc", 8)
    events.sort(key=lambda e: e.data.acquired)
    outcomes = []
    for event in events:
        register(runtime, event)
        outcomes.append(worker.handle(event).status)
    assert outcomes.count("processed") >= 10
    assert set(outcomes) <= {"processed", "skipped"}
    store = StateStore(runtime.settings.state.url)
    state = store.load("tiny")
    assert state is not None and state.version == outcomes.count("processed")
    changes = change_events(runtime)
    assert len(changes) == outcomes.count("processed")
    for change in changes:
        assert change.data.model_version.startswith(("change_s2@", "change_s1@"))
        assert change.data.scene_ids and change.data.city_id == "tiny"
    counts = runtime.db.scene_counts("tiny")
    assert counts.get("processed", 0) + counts.get("skipped", 0) == len(events)
    for row in runtime.db.scenes(statuses=["skipped"]):
        assert row.reason  # every skip says why


def test_redelivered_scene_changes_nothing_and_repeats_its_change_event(
        runtime: Runtime, small_archive: Archive) -> None:
    worker = build_worker(runtime)
    events = [e for e in events_for(small_archive, "sentinel-2-l2a", 10)]
    for event in events:
        register(runtime, event)
        worker.handle(event)
    store = StateStore(runtime.settings.state.url)
    before = store.load("tiny")
    last_processed = [e for e in events if runtime.db.scene(e.id).status == "processed"][-1]
    n_changes = len(change_events(runtime))
    outcome = worker.handle(last_processed)
    assert outcome.status == "duplicate"
    after = store.load("tiny")
    assert after.version == before.version
    for name, array in before.to_arrays().items():
        np.testing.assert_array_equal(array, after.to_arrays()[name])
    changes = change_events(runtime)
    assert len(changes) == n_changes + 1
    assert changes[-1].id == outcome.change.id  # same deterministic id: consumers drop it
    assert any(c.id == outcome.change.id for c in changes[:-1])


def test_a_fresh_worker_takes_over_from_the_persisted_state(runtime: Runtime, small_archive: Archive) -> None:
    events = events_for(small_archive, "sentinel-2-l2a", 14)
    first = build_worker(runtime)
    for event in events[:7]:
        register(runtime, event)
        first.handle(event)
    second = build_worker(runtime)  # another process picking the partition up
    for event in events[7:]:
        register(runtime, event)
        second.handle(event)
    split = StateStore(runtime.settings.state.url).load("tiny")

    # the same scenes through one worker from scratch give the same state
    shutil.rmtree(runtime.settings.state.url)
    single = build_worker(runtime)
    for event in events:
        single.handle(event)
    whole = StateStore(runtime.settings.state.url).load("tiny")
    for name, array in split.to_arrays().items():
        np.testing.assert_array_equal(array, whole.to_arrays()[name])


def test_bad_scenes_get_a_clear_outcome_and_the_worker_goes_on(
        runtime: Runtime, small_archive: Archive, tmp_path: Path) -> None:
    worker = build_worker(runtime)
    loop = build_inference_loop(runtime, worker, client_id="test")
    good = events_for(small_archive, "sentinel-2-l2a", 6)
    s1 = events_for(small_archive, "sentinel-1-rtc", 1)[0]

    corrupt_file = tmp_path / "corrupt.tif"
    corrupt_file.write_bytes(b"II*\x00" + b"\x00" * 100)
    data: SceneData = s1.data  # type: ignore[assignment]
    corrupt = scene_from_item(_item_with(small_archive, s1, {"vv": str(corrupt_file)}, "corrupt"), "tiny")
    far_away = scene_from_item(_item_with(small_archive, s1, {}, "elsewhere"), "tiny")
    far_data = far_away.data.model_copy(update={"assets": {
        k: a.model_copy(update={"href": str(_shifted_copy(Path(a.href), tmp_path))})
        for k, a in data.assets.items()}})
    from monitor.domain.events import scene_event
    far_away = scene_event(far_data)
    unknown_city = scene_event(data.model_copy(update={"city_id": "atlantis"}))
    for event in [good[0], corrupt, good[1], far_away, unknown_city, *good[2:]]:
        register(runtime, event)
        runtime.bus.publish(runtime.settings.bus.scenes_topic, event.data.city_id, event.to_json())
    runtime.bus.publish(runtime.settings.bus.scenes_topic, "tiny", b"{garbage")
    drain(loop)

    assert runtime.db.scene(corrupt.id).status == "dead_lettered"
    assert "corrupt" in runtime.db.scene(corrupt.id).reason
    assert runtime.db.scene(far_away.id).status == "skipped"
    assert "does not cover the city" in runtime.db.scene(far_away.id).reason
    assert runtime.db.scene(unknown_city.id).status == "dead_lettered"
    for event in good:
        assert runtime.db.scene(event.id).status in ("processed", "skipped")
    letters = [json.loads(m.value) for m in runtime.bus.records(runtime.settings.bus.dead_letter_topic)]  # type: ignore[attr-defined]
    assert sorted(letter["data"]["error_type"] for letter in letters) == ["EventError", "SceneReadError", "SceneReadError"]


def test_unfinished_scenes_are_republished_after_a_restart(runtime: Runtime, small_archive: Archive) -> None:
    events = events_for(small_archive, "sentinel-2-l2a", 3)
    for event in events:
        register(runtime, event)
    runtime.db.mark_scene(events[0].id, "processed")
    from monitor.adapters.bus_embedded import EmbeddedBus

    runtime.bus = EmbeddedBus()  # the process restarted: the in-process bus is empty
    assert republish_unfinished(runtime) == 2
    ids = [parse_event(m.value, SCENE_TYPE).id
           for m in runtime.bus.records(runtime.settings.bus.scenes_topic)]  # type: ignore[attr-defined]
    assert sorted(ids) == sorted(e.id for e in events[1:])


def _item_with(archive: Archive, event, hrefs: dict[str, str], suffix: str) -> dict:  # type: ignore[no-untyped-def]
    item = next(i for i in archive.items("sentinel-1-rtc") if i["id"] == event.data.item_id)
    item = json.loads(json.dumps(item))
    item["id"] = f"{item['id']}-{suffix}"
    for key, href in hrefs.items():
        item["assets"][key]["href"] = href
    return item


def _shifted_copy(path: Path, tmp_path: Path) -> Path:
    """The same raster, georeferenced 500 km away (a scene that misses the city)."""
    import rasterio
    from affine import Affine

    out = tmp_path / f"far-{path.name}"
    with rasterio.open(path) as src:
        profile = src.profile.copy()
        t = src.transform
        profile["transform"] = Affine(t.a, t.b, t.c + 500_000, t.d, t.e, t.f)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        profile["driver"] = "GTiff"
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
    return out


def test_scene_missing_from_the_registry_is_registered_not_stalled(
        runtime: Runtime, small_archive: Archive) -> None:
    worker = build_worker(runtime)
    event = events_for(small_archive, "sentinel-2-l2a", 1)[0]
    assert runtime.db.scene(event.id) is None  # published by another tool
    outcome = worker.handle(event)
    row = runtime.db.scene(event.id)
    assert row is not None and row.status == outcome.status and row.status in ("processed", "skipped")
