"""The products' pure parts: the layers of a state, the cadence, the STAC item and the
MLM items of the model cards; and the worker's hook that publishes saved versions."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pytest

from monitor.domain.state import CityState
from monitor.domain.vocabulary import date_to_day
from monitor.errors import ProductError
from monitor.pipeline.products import LayerPublisher
from monitor.products.layers import (
    LAYER_NAMES,
    STATUS_CLASSES,
    LayerCadence,
    PublishedMark,
    build_layers,
    layer_set,
)
from monitor.products.mlm import WEIGHTS_LICENSE, model_item
from monitor.products.stac import AssetFile, layer_item, parse_item_id
from tests.stac_validation import validate
from tests.unit.test_inference_step import GRID, Fixture, s2_event


def state_at(version: int, day: date) -> CityState:
    state = CityState.create(GRID)
    state.version = version
    state.last_day = {"s2": date_to_day(day)}
    state.first_stream_day = {"s2": date_to_day(date(2023, 1, 1))}
    return state


def test_the_status_classes_are_the_state_codes() -> None:
    assert [(c.value, c.name) for c in STATUS_CLASSES] == [
        (0, "none"), (1, "first"), (2, "provisional"), (3, "confirmed"), (4, "retracted"),
        (5, "withdrawn")]


def test_layers_hold_the_state_values() -> None:
    state = state_at(1, date(2024, 1, 2))
    a = state.to_arrays()
    a["status"][0, :3] = [3, 1, 4]
    a["first_day"][0, :3] = [3600, 3700, 3500]
    a["confirm_lag"][0, 0] = 11
    a["s2_count"][0, 0] = 17
    a["last_clear"][0, 0] = 3800
    a["change_day"][0, :4] = [3590, 3690, 3490, 3480]  # [0, 3]: an undetected running run
    layers = build_layers(state)
    assert layers["change_date"][0, :4].tolist() == [3590, 3690, 3490, 0]
    assert tuple(layers) == LAYER_NAMES
    assert layers["status"][0, :3].tolist() == [3, 1, 4]
    assert layers["first_detection_date"][0, 0] == 3600
    assert layers["confirmation_date"][0, 0] == 3600 + 11 - 1
    assert layers["clear_count"][0, 0] == 17 and layers["last_clear_date"][0, 0] == 3800
    assert layers["confidence"].dtype == np.uint8 and layers["confidence"][0, 0] >= 50


def test_cadence() -> None:
    day = LayerCadence()
    first = state_at(4, date(2024, 5, 1))
    assert day.due(first, None)
    mark = PublishedMark(4, date_to_day(date(2024, 5, 1)))
    assert not day.due(state_at(5, date(2024, 5, 1)), mark)  # same acquisition day
    assert day.due(state_at(5, date(2024, 5, 2)), mark)
    assert not day.due(state_at(4, date(2024, 5, 9)), mark)  # not a newer version
    assert LayerCadence("day", every_versions=3).due(state_at(7, date(2024, 5, 1)), mark)
    assert LayerCadence("version").due(state_at(5, date(2024, 5, 1)), mark)
    assert not LayerCadence("on-demand").due(first, None)


def test_layer_item_is_valid_stac_with_the_grid() -> None:
    layers = layer_set("stockholm", state_at(42, date(2024, 5, 1)))
    files = {n: AssetFile(f"./{n}.tif", 100, "1220" + "0" * 64) for n in LAYER_NAMES}
    item = layer_item(layers, files).to_dict(include_self_link=False)
    item.pop("collection")  # a stored item is linked to its collection when served
    validate(item)
    assert item["id"] == "stockholm-v00000042" and parse_item_id(item["id"]) == ("stockholm", 42)
    assert item["properties"]["proj:code"] == f"EPSG:{GRID.epsg}"
    assert item["properties"]["proj:shape"] == [GRID.height, GRID.width]
    assert item["properties"]["end_datetime"].startswith("2024-05-01")
    assert item["assets"]["status"]["classification:classes"][3]["name"] == "confirmed"
    assert item["assets"]["change_date"]["raster:bands"][0]["unit"] == "days since 2014-01-01"


def test_model_cards_become_mlm_items_keeping_the_card() -> None:
    from stac_model.schema import MLModelProperties

    from monitor.adapters.model_cards import ModelCards

    cards = ModelCards().cards()
    assert {c["name"] for c in cards} >= {"change_s2", "change_s1", "change_dual"}
    for card in cards:
        item = model_item(card, "./model.onnx").to_dict(include_self_link=False)
        item.pop("collection")
        validate(item)
        props = MLModelProperties.model_validate(item["properties"])
        assert props.framework == "ONNX" and props.output[0].name == card["output"]["name"]
        assert item["properties"]["license"] == WEIGHTS_LICENSE
        assert item["properties"]["urban_monitor:licence"] == card["licence"]
        assert item["properties"]["urban_monitor:metrics"] == card["metrics"]
        assert json.loads(json.dumps(item)) == item


class RecordingPublisher:
    def __init__(self) -> None:
        self.versions: list[int] = []

    def state_saved(self, city_id: str, state: CityState) -> bool:
        self.versions.append(int(state.version))
        return True


def test_the_worker_hands_every_saved_version_to_the_publisher() -> None:
    f = Fixture()
    f.worker.publisher = publisher = RecordingPublisher()
    events = [s2_event(n) for n in range(3)]
    for event in events:
        f.register(event)
        f.worker.handle(event)
    f.worker.handle(events[-1])  # a redelivery saves nothing: nothing to publish
    assert publisher.versions == [1, 2, 3]


class BrokenStore:
    def write(self, layers: Any) -> dict[str, Any]:
        raise ProductError(layers.city_id, "the disk is full")

    def last_published(self, city_id: str) -> PublishedMark | None:
        return None


def test_a_failed_layer_write_never_fails_the_scene(caplog: pytest.LogCaptureFixture) -> None:
    publisher = LayerPublisher(BrokenStore())
    assert publisher.state_saved("stockholm", state_at(1, date(2024, 5, 1))) is False
    assert "the disk is full" in caplog.text


def test_the_package_metadata_states_the_weights_licence_apart_from_the_code() -> None:
    import importlib.metadata
    from pathlib import Path

    from monitor.adapters.model_cards import shipped_artifacts_dir

    meta = importlib.metadata.metadata("urban-monitor")
    assert meta["License"].startswith("Apache-2.0 (the code)")
    assert "CC-BY-NC-SA-4.0" in meta["License"]
    assert any("CC BY-NC-SA 4.0" in url for url in meta.get_all("Project-URL") or [])
    folder = shipped_artifacts_dir()
    assert folder is not None
    assert "CC BY-NC-SA 4.0" in Path(folder, "WEIGHTS-LICENSE.md").read_text()
