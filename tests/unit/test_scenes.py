"""STAC item -> scene mapping on the real items of both providers (../shared/data/stac)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box

from monitor.domain.scenes import (
    CityArea,
    CityIndex,
    boa_offset,
    filter_reason,
    group_cities,
    item_datetime,
    processing_baseline,
    scene_from_item,
    search_area,
    search_window,
    sort_key,
)
from monitor.errors import ItemError
from monitor.settings import load_settings

STAC_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stac"


def _items(name: str) -> list[dict[str, Any]]:
    path = STAC_DIR / f"{name}__items.json"
    if not path.exists():
        pytest.skip(f"real STAC responses are absent ({path}); these tests read them")
    return json.loads(path.read_text())["features"]


def _item(name: str, item_id: str) -> dict[str, Any]:
    return next(i for i in _items(name) if i["id"] == item_id)


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def _scene(item: dict[str, Any], settings, provider: str, collection: str, **kw: Any):
    cs = settings.collection(provider, collection)
    return scene_from_item(item, city_id="c", provider=provider, stac_api="http://x",
                           collection=collection, modality=cs.modality, asset_keys=cs.assets,
                           **kw)


def test_earth_search_c1_s2_item_maps_canonical_bands_and_needs_boa_offset(settings) -> None:
    item = _item("earth-search__sentinel-2-c1-l2a", "S2B_T24MXV_20250731T130245_L2A")
    scene = _scene(item, settings, "earth-search", "sentinel-2-c1-l2a")
    assert scene.modality == "s2"
    assert scene.assets["red"].key == "red" and scene.assets["red"].href.endswith("/B04.tif")
    assert scene.assets["nir"].href.endswith("/B08.tif")
    assert scene.assets["scl"].href.endswith("/SCL.tif")
    assert set(scene.assets) == {"blue", "green", "red", "nir", "swir16", "swir22", "scl"}
    # Collection 1, baseline 05.11, offset not removed: raster:bands say offset -0.1 too.
    assert scene.processing_baseline == "05.11"
    assert scene.boa_offset == 1000.0
    assert scene.cloud_cover == pytest.approx(24.684544)
    assert scene.epsg == 32724
    assert scene.platform == "sentinel-2b"
    assert scene.acquired == datetime(2025, 7, 31, 13, 3, 22, 435000, tzinfo=UTC)
    assert scene.published == datetime(2025, 7, 31, 14, 13, 51, 609000, tzinfo=UTC)


def test_earth_search_l2a_offset_already_applied_means_no_offset(settings) -> None:
    item = _item("earth-search__sentinel-2-l2a", "S2B_24MXV_20250731_0_L2A")
    assert item["properties"]["earthsearch:boa_offset_applied"] is True
    scene = _scene(item, settings, "earth-search", "sentinel-2-l2a")
    assert scene.processing_baseline == "05.11"
    assert scene.boa_offset == 0.0


def test_planetary_computer_s2_uses_b_keys_and_old_baseline_has_no_offset(settings) -> None:
    item = _items("planetarycomputer__sentinel-2-l2a")[0]
    scene = _scene(item, settings, "planetary-computer", "sentinel-2-l2a")
    assert scene.assets["red"].key == "B04" and scene.assets["nir"].key == "B08"
    assert scene.assets["scl"].key == "SCL"
    assert scene.processing_baseline == "02.12" and scene.boa_offset == 0.0
    assert scene.orbit_state == "descending" and scene.relative_orbit == 116
    assert scene.published is None  # PC items carry no publication time


def test_processing_baseline_falls_back_to_product_uri_and_date() -> None:
    uri = {"s2:product_uri": "S2B_MSIL2A_20250731T131909_N0511_R095_T20EPT_20250731T143919.SAFE"}
    assert processing_baseline(uri) == "05.11"
    after = datetime(2023, 1, 1, tzinfo=UTC)
    before = datetime(2021, 1, 1, tzinfo=UTC)
    assert boa_offset({}, "04.00", before) == 1000.0
    assert boa_offset({}, "03.01", after) == 0.0
    assert boa_offset({}, None, after) == 1000.0
    assert boa_offset({}, None, before) == 0.0
    assert boa_offset({"earthsearch:boa_offset_applied": True}, "05.09", after) == 0.0


def test_planetary_computer_rtc_item_carries_orbit_mode_polarisations(settings) -> None:
    item = _items("planetarycomputer__sentinel-1-rtc")[0]
    scene = _scene(item, settings, "planetary-computer", "sentinel-1-rtc")
    assert scene.modality == "s1"
    assert set(scene.assets) == {"vv", "vh"}
    assert scene.assets["vv"].href.endswith("iw-vv.rtc.tiff")
    assert scene.orbit_state == "descending" and scene.relative_orbit == 51
    assert scene.instrument_mode == "IW" and scene.polarizations == ["VV", "VH"]
    assert scene.backscatter_unit == "gamma0_linear"
    assert scene.epsg == 32633
    assert scene.boa_offset == 0.0 and scene.cloud_cover is None


def test_planetary_computer_grd_is_dn(settings) -> None:
    item = _items("planetarycomputer__sentinel-1-grd")[0]
    scene = _scene(item, settings, "planetary-computer", "sentinel-1-grd")
    assert scene.backscatter_unit == "dn" and scene.relative_orbit == 95


def test_hh_only_earth_search_grd_is_filtered_not_malformed(settings) -> None:
    item = _items("earth-search__sentinel-1-grd")[0]
    reason = filter_reason(item, modality="s1", instrument_mode="IW", polarizations=["VV", "VH"])
    assert reason is not None and "VV" in reason
    assert filter_reason(item, modality="s1", instrument_mode="EW") is not None
    with pytest.raises(ItemError, match="missing required asset"):
        _scene(item, settings, "earth-search", "sentinel-1-grd")


def test_cloud_cover_filter() -> None:
    item = _item("planetarycomputer__sentinel-2-l2a",
                 "S2A_MSIL2A_20190101T000001_R116_T58VFH_20201007T214652")
    assert filter_reason(item, modality="s2", max_cloud_cover=80) is not None
    assert filter_reason(item, modality="s2", max_cloud_cover=95) is None
    assert filter_reason(item, modality="s2", max_cloud_cover=None) is None


def test_malformed_real_items_raise_item_error_naming_the_item(settings) -> None:
    # Real Earth Search answers: the T13TDE items came back without geometry or assets.
    bare = _item("earth-search__sentinel-2-c1-l2a", "S2A_T13TDE_20250711T175745_L2A")
    with pytest.raises(ItemError, match="S2A_T13TDE_20250711T175745_L2A.*geometry"):
        _scene(bare, settings, "earth-search", "sentinel-2-c1-l2a")

    good = _item("earth-search__sentinel-2-c1-l2a", "S2B_T24MXV_20250731T130245_L2A")
    no_red = copy.deepcopy(good)
    del no_red["assets"]["red"]
    with pytest.raises(ItemError, match=r"missing required asset\(s\) \['red'\]"):
        _scene(no_red, settings, "earth-search", "sentinel-2-c1-l2a")

    no_time = copy.deepcopy(good)
    no_time["properties"]["datetime"] = None
    with pytest.raises(ItemError, match="datetime"):
        item_datetime(no_time)

    bad_geom = copy.deepcopy(good)
    bad_geom["geometry"] = {"type": "Polygon", "coordinates": [[[0, 0], [1]]]}
    with pytest.raises(ItemError, match="geometry"):
        _scene(bad_geom, settings, "earth-search", "sentinel-2-c1-l2a")

    line = copy.deepcopy(good)
    line["geometry"] = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    with pytest.raises(ItemError, match="without area"):
        _scene(line, settings, "earth-search", "sentinel-2-c1-l2a")


def test_start_datetime_is_used_when_datetime_is_null() -> None:
    item = copy.deepcopy(_items("planetarycomputer__sentinel-1-grd")[0])
    item["properties"]["datetime"] = None
    # PC writes start_datetime with a space: '2025-03-12 05:22:36.604436+00:00'
    assert item_datetime(item) == datetime(2025, 3, 12, 5, 22, 36, 604436, tzinfo=UTC)


def test_search_window_uses_watermark_minus_lookback() -> None:
    now = datetime(2025, 8, 1, tzinfo=UTC)
    lookback = timedelta(days=5)
    assert search_window(None, now, lookback) == (now - lookback, now)
    mark = datetime(2025, 7, 31, 13, 0)  # naive from the database = UTC
    start, end = search_window(mark, now, lookback)
    assert start == datetime(2025, 7, 26, 13, 0, tzinfo=UTC) and end == now


def test_cities_are_grouped_by_cell_and_items_assigned_by_intersection() -> None:
    cities = [CityArea(f"c{i}", box(i * 0.5, 0, i * 0.5 + 0.2, 0.2)) for i in range(30)]
    cities.append(CityArea("far", box(100, 40, 100.2, 40.2)))
    groups = group_cities(cities, max_per_group=8)
    assert sum(len(g) for g in groups) == 31
    assert all(len(g) <= 8 for g in groups)
    assert len(groups) == 4  # ceil(31 / 8): consecutive cities share a search
    first = sorted(int(c.id[1:]) for c in groups[0])
    assert first == list(range(first[0], first[0] + 8))  # neighbours share a search
    area = search_area(groups[0])
    assert area["type"] in ("Polygon", "MultiPolygon")
    index = CityIndex(cities)
    assert index.hits(box(0.1, 0.1, 0.6, 0.15)) == ["c0", "c1"]
    assert index.hits(box(50, 50, 51, 51)) == []


def test_sort_key_orders_by_acquisition_then_id() -> None:
    items = _items("earth-search__sentinel-2-c1-l2a")
    ordered = sorted(items, key=sort_key)
    times = [item_datetime(i) for i in ordered]
    assert times == sorted(times)
