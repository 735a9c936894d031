"""A real STAC API (`rustac serve`) serving the synthetic archive, searched by pystac-client."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import httpx
import pytest
from pystac_client import Client

from monitor.adapters.stac_server import StacServer
from monitor.errors import ServiceError
from monitor.synthetic.archive import generate_archive
from monitor.synthetic.params import ArchiveParams

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    params = ArchiveParams(size_km=0.6, start=date(2019, 1, 1), end=date(2019, 4, 30), n_sites=2)
    return generate_archive(tmp_path_factory.mktemp("served"), params, workers=1,
                            progress=False)


def test_pystac_client_finds_items_with_intersects_datetime_and_paging(archive) -> None:
    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as server:
        client = Client.open(server.url)
        assert {c.id for c in client.get_collections()} == {"sentinel-2-l2a", "sentinel-1-rtc"}
        search = client.search(collections=["sentinel-2-l2a"],
                               intersects=archive.aoi.centroid.buffer(0.001).__geo_interface__,
                               datetime="2019-02-01/2019-03-31", limit=3)
        items = list(search.items())
        expected = [it["id"] for it in archive.items("sentinel-2-l2a")
                    if "2019-02-01" <= it["properties"]["datetime"][:10] <= "2019-03-31"]
        assert sorted(i.id for i in items) == sorted(expected) and len(expected) > 3
        pages = list(search.pages())
        assert len(pages) >= 2 and all(len(p.items) <= 3 for p in pages)
        first = items[0]
        assert Path(first.assets["red"].href).exists()
        assert first.properties["earthsearch:boa_offset_applied"] is False
        s1 = list(client.search(collections=["sentinel-1-rtc"], max_items=5).items())
        assert s1 and s1[0].properties["sat:orbit_state"] in {"ascending", "descending"}
        # Far away: nothing.
        none = client.search(collections=["sentinel-2-l2a"],
                             intersects={"type": "Point", "coordinates": [10.0, 50.0]})
        assert list(none.items()) == []


def test_new_items_appear_between_polls(archive) -> None:
    s2 = archive.items("sentinel-2-l2a")
    with StacServer(list(archive.collection_paths.values()), s2[:5]) as server:
        url = server.url
        assert len(list(Client.open(url).search(collections=["sentinel-2-l2a"]).items())) == 5
        server.add_items(s2[5:8])
        assert server.url == url
        ids = {i.id for i in Client.open(url).search(collections=["sentinel-2-l2a"]).items()}
        assert ids == {it["id"] for it in s2[:8]}
        server.add_items(s2[7:8])  # republished: replaced, not duplicated
        assert len(list(Client.open(url).search(collections=["sentinel-2-l2a"]).items())) == 8
        server.restart_with(archive.item_paths["sentinel-2-l2a"][:2])
        assert len(list(Client.open(url).search(collections=["sentinel-2-l2a"]).items())) == 2
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, timeout=1.0)  # stopped cleanly


def test_rustac_has_no_transactions_so_restart_is_the_way(archive) -> None:
    item = archive.items("sentinel-2-l2a")[0]
    with StacServer(list(archive.collection_paths.values())) as server:
        r = httpx.post(f"{server.url}collections/sentinel-2-l2a/items", json=item, timeout=5)
        assert r.status_code == 405


def test_serves_real_provider_responses_too() -> None:
    coll = DATA / "stac" / "earth-search__sentinel-2-l2a__collection.json"
    items = DATA / "stac" / "earth-search__sentinel-2-l2a__items.json"
    if not coll.exists():
        pytest.skip(f"real STAC responses not found under {DATA / 'stac'}")
    with StacServer([coll], [items]) as server:
        found = list(Client.open(server.url).search(collections=["sentinel-2-l2a"],
                                                    datetime="2025-07-31").items())
        assert len(found) == len(json.loads(items.read_text())["features"]) - 1


def test_failures_become_service_errors_with_the_log(tmp_path) -> None:
    with pytest.raises(ServiceError, match="does not exist"):
        StacServer([tmp_path / "missing.json"])
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ServiceError, match="exited") as info:
        StacServer([bad]).start()
    assert "log tail" in str(info.value)
