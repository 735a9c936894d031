"""The change layers as products: COGs written from a city state (GDAL's COG layout,
overviews, deflate, the grid's CRS, values equal to the state's), their STAC items served
by the API's /stac (pystac validation, pystac-client search, odc-stac loading the layers
back over HTTP range requests) and exported as a static catalog (urban-monitor export
stac), and the model cards as STAC MLM items."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pystac
import pytest
import rasterio

from monitor.adapters.database import Database
from monitor.adapters.layer_store import LayerStore
from monitor.adapters.model_cards import ModelCards
from monitor.adapters.state_store import StateStore
from monitor.domain.grid import CityGrid
from monitor.domain.state import CityState
from monitor.domain.vocabulary import date_to_day
from monitor.pipeline.products import LayerPublisher, export_static_catalog
from monitor.products.layers import LAYER_NAMES, LAYERS, LayerCadence, build_layers
from monitor.settings import CitySettings, Settings, StateSettings
from services.api import create_app
from tests.integration.alerting_fixtures import serve
from tests.stac_validation import OfflineValidator, validate

CITY = "paris"
# 600 x 520 px: large enough for two overview levels of 256 px tiles
GRID = CityGrid(epsg=32631, origin_x=440_000.0, origin_y=5_420_000.0, width=600, height=520)


def make_state(version: int, seed: int = 0) -> CityState:
    """A state with every status, dates and counts (set as the update kernel would)."""
    state = CityState.create(GRID)
    a = state.to_arrays()
    rng = np.random.default_rng(seed)
    status = np.zeros(GRID.shape, np.uint8)
    status[100:200, 100:300] = 3
    status[300:340, 50:120] = 2
    status[400:420, 400:460] = 1
    status[10:30, 500:560] = 4
    status[450:470, 10:40] = 5
    a["status"][:] = status
    active = status > 0
    first = date_to_day(date(2023, 5, 1)) + rng.integers(0, 200, GRID.shape)
    a["first_day"][:] = np.where(active, first, 0)
    a["change_day"][:] = np.where(active, first - 12, 0)
    a["confirm_lag"][:] = np.where(status == 3, 30, 0)
    a["evidence"][:] = np.where(active, rng.integers(0, 20000, GRID.shape), 0)
    a["s2_count"][:] = rng.integers(0, 90, GRID.shape)
    a["last_clear"][:] = date_to_day(date(2024, 3, 1)) - rng.integers(0, 40, GRID.shape)
    state.version = version
    state.last_scene_id = f"scene-{version}"
    state.first_stream_day = {"s2": date_to_day(date(2023, 1, 3))}
    state.last_day = {"s2": date_to_day(date(2024, 3, 1)) + version,
                      "s1:ascending-88": date_to_day(date(2024, 2, 27))}
    state.last_model_version = "change_s2@2.0.0+b533b64b"
    return state


@pytest.fixture
def published(tmp_path: Path) -> tuple[LayerStore, dict[int, CityState]]:
    store = LayerStore(str(tmp_path / "state"))
    publisher = LayerPublisher(store, LayerCadence(mode="version"))
    states = {v: make_state(v, seed=v) for v in (3, 4)}
    t0 = time.perf_counter()
    for state in states.values():
        assert publisher.state_saved(CITY, state)
    print(f"layers of a {GRID.width}x{GRID.height} px city: "
          f"{(time.perf_counter() - t0) / len(states):.2f} s per version")
    return store, states


def test_layers_are_cloud_optimized_geotiffs_equal_to_the_state(
        published: tuple[LayerStore, dict[int, CityState]]) -> None:
    store, states = published
    assert store.versions(CITY) == [3, 4]
    expected = build_layers(states[4])
    for spec in LAYERS:
        path = store.asset_path(CITY, 4, spec.name)
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", spec.name
            assert ds.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
            assert ds.block_shapes == [(256, 256)]
            assert ds.overviews(1) == [2, 4], spec.name
            assert ds.crs.to_epsg() == GRID.epsg
            assert tuple(ds.transform)[:6] == GRID.transform
            assert ds.dtypes[0] == spec.dtype and ds.nodata == spec.nodata
            np.testing.assert_array_equal(ds.read(1), expected[spec.name])
    # the documented values: dates are the state's days, confidence 0..100
    np.testing.assert_array_equal(expected["change_date"], states[4].change_day)
    np.testing.assert_array_equal(expected["confirmation_date"], states[4].confirm_day)
    np.testing.assert_array_equal(expected["last_clear_date"], states[4].last_clear_day)
    assert expected["confidence"].max() <= 100
    assert set(np.unique(expected["status"])) == {0, 1, 2, 3, 4, 5}


def test_cadence_publishes_once_per_acquisition_day(tmp_path: Path) -> None:
    store = LayerStore(str(tmp_path / "state"))
    publisher = LayerPublisher(store)  # the default: one layer set per acquisition day
    first = make_state(1)
    assert publisher.state_saved(CITY, first)
    same_day = make_state(2)
    same_day.last_day = dict(first.last_day)
    assert not publisher.state_saved(CITY, same_day)
    assert publisher.state_saved(CITY, make_state(3))  # a later acquisition day
    assert store.versions(CITY) == [1, 3]
    # a new publisher (a restarted worker) continues from the stored mark
    assert not LayerPublisher(store).state_saved(CITY, make_state(3))
    assert not LayerPublisher(store, LayerCadence(mode="on-demand")).state_saved(
        CITY, make_state(9))


@pytest.fixture
def api(tmp_path: Path, published: tuple[LayerStore, dict[int, CityState]]) -> Iterator[str]:
    store, _ = published
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.init_schema()
    settings = Settings(cities=[CitySettings(id=CITY, name="Paris", bbox=(2.2, 48.8, 2.3, 48.9))],
                        state=StateSettings(url=str(tmp_path / "state")))
    with serve(create_app(settings, db, layers=store, model_cards=ModelCards())) as url:
        yield url
    db.dispose()


def test_stac_api_search_and_odc_stac_round_trip(
        api: str, published: tuple[LayerStore, dict[int, CityState]]) -> None:
    import odc.stac
    from pystac_client import Client

    _, states = published
    landing = httpx.get(f"{api}/stac").json()
    assert landing["type"] == "Catalog" and "https://api.stacspec.org/v1.0.0/item-search" in (
        landing["conformsTo"])
    client = Client.open(f"{api}/stac")
    assert {c.id for c in client.get_collections()} == {"change-layers", "change-models"}
    collection = client.get_collection("change-layers")
    assert collection is not None
    validate(collection)
    assert collection.extent.temporal.intervals[0][0] is not None

    footprint = GRID.footprint_wgs84()
    search = client.search(collections=["change-layers"], bbox=list(footprint.bounds),
                           datetime="2024-01-01/..", max_items=10)
    items = list(search.items())
    assert sorted(i.id for i in items) == ["paris-v00000003", "paris-v00000004"]
    assert list(client.search(collections=["change-layers"], bbox=[100, 10, 101, 11]).items()) == []
    assert [i.id for i in client.search(ids=["paris-v00000004"]).items()] == ["paris-v00000004"]
    paged = client.search(collections=["change-layers"], limit=1)  # follows the next links
    assert len(list(paged.items())) == 2

    item = next(i for i in items if i.id == "paris-v00000004")
    validator = OfflineValidator()
    item.validate(validator=validator)
    assert {"projection", "raster", "file", "classification"} <= {
        u.split("/")[3] for u in item.stac_extensions}
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    proj = ProjectionExtension.ext(item)
    assert proj.code == f"EPSG:{GRID.epsg}" and proj.shape == [GRID.height, GRID.width]
    status = item.assets["status"]
    names = [c.name for c in ClassificationExtension.ext(status).classes or []]
    assert names == ["none", "first", "provisional", "confirmed", "retracted", "withdrawn"]
    bands = RasterExtension.ext(item.assets["change_date"]).bands or []
    assert bands[0].data_type == "uint16" and bands[0].nodata == 0
    file = FileExtension.ext(status)
    raw = httpx.get(status.href).content
    assert file.size == len(raw) and file.checksum and file.checksum.startswith("1220")

    # a byte range, as GDAL's /vsicurl/ asks
    part = httpx.get(status.href, headers={"Range": "bytes=0-15"})
    assert part.status_code == 206 and part.content == raw[:16]

    data = odc.stac.load([item], bands=list(LAYER_NAMES), chunks=None)
    expected = build_layers(states[4])
    assert data.odc.geobox.crs.epsg == GRID.epsg
    for name in LAYER_NAMES:
        np.testing.assert_array_equal(data[name].isel(time=0).values, expected[name])


def test_model_cards_are_stac_mlm_items(api: str) -> None:
    from pystac.extensions.mlm import MLMExtension
    from pystac_client import Client
    from stac_model.schema import MLModelProperties

    client = Client.open(f"{api}/stac")
    items = list(client.search(collections=["change-models"]).items())
    cards = {c["name"]: c for c in ModelCards().cards()}
    assert sorted(i.properties["mlm:name"] for i in items) == sorted(cards)
    for item in items:
        validate(item)
        mlm = MLModelProperties.model_validate(item.properties)  # stac-model (MLM) validation
        card = cards[mlm.name]
        # pystac-ext-mlm reads the same fields with its typed accessors (required ones raise)
        ext = MLMExtension.ext(item)
        assert MLMExtension.has_extension(item)
        assert ext.architecture == card["architecture"] and ext.framework == "ONNX"
        assert ext.tasks == ["segmentation"]
        assert [i.name for i in ext.input] == [i["name"] for i in card["inputs"]]
        assert [i.bands for i in ext.input] == [i["bands"] for i in card["inputs"]]
        assert all(i.input.dim_order == ["batch", "bands", "height", "width"]
                   and i.input.data_type == "float32" for i in ext.input)
        assert [o.name for o in ext.output] == ["p_change"]
        assert item.properties["license"] == "CC-BY-NC-SA-4.0"
        assert [i.name for i in mlm.input] == [i["name"] for i in card["inputs"]]
        for key in set(card) - {"name", "architecture", "inputs", "output", "onnx",
                                "onnx_opset", "onnx_sha256", "onnx_bytes"}:
            assert item.properties[f"urban_monitor:{key}"] == card[key], key
        onnx = httpx.head(item.assets["model"].href)
        assert onnx.status_code == 200 and int(onnx.headers["content-length"]) == card["onnx_bytes"]


def test_export_stac_writes_a_static_catalog(
        tmp_path: Path, published: tuple[LayerStore, dict[int, CityState]]) -> None:
    import odc.stac

    store, states = published
    out = tmp_path / "export"
    path = export_static_catalog(store, CITY, out, cards=ModelCards())
    catalog = pystac.Catalog.from_file(str(path))
    validate(catalog)
    for child in catalog.get_children():
        validate(child)
    items = {i.id: i for i in catalog.get_items(recursive=True)}
    for item in items.values():
        validate(item)
    assert {"paris-v00000003", "paris-v00000004"} <= set(items)
    layer_item = items["paris-v00000004"]
    assert not Path(layer_item.to_dict()["assets"]["status"]["href"]).is_absolute()
    data = odc.stac.load([layer_item], bands=["status", "first_detection_date"], chunks=None)
    expected = build_layers(states[4])
    np.testing.assert_array_equal(data["status"].isel(time=0).values, expected["status"])
    np.testing.assert_array_equal(data["first_detection_date"].isel(time=0).values,
                                  expected["first_detection_date"])


def test_export_cli_publishes_the_latest_state_first(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.cli import main

    states = StateStore(str(tmp_path / "state"))
    states.save(CITY, make_state(5))
    monkeypatch.setenv("URBAN_MONITOR_STATE__URL", str(tmp_path / "state"))
    out = tmp_path / "static"
    assert main(["export", "stac", "--city", CITY, "--out", str(out), "--no-models"]) == 0
    catalog = json.loads((out / "catalog.json").read_text())
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == [
        "./change-layers/collection.json"]
    with rasterio.open(out / "change-layers" / "paris-v00000005" / "status.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
