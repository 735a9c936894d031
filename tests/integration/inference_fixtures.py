"""A small synthetic archive and an embedded inference runtime for the worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.database import Database
from monitor.domain.city import City
from monitor.domain.events import Asset, CloudEvent, SceneData, scene_event
from monitor.pipeline.runtime import Runtime
from monitor.settings import CONFIG_DIR, load_settings
from monitor.synthetic.archive import Archive, generate_archive
from monitor.synthetic.params import ArchiveParams

SMALL = ArchiveParams(name="tiny", size_km=1.0, start=date(2019, 1, 1), end=date(2019, 8, 31),
                      seed=3, n_sites=4)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = Path(__file__).resolve().parents[2] / "var" / "test-archives" / "tiny"
    return generate_archive(root, SMALL, progress=False)


def scene_from_item(item: dict, city_id: str, provider: str = "synthetic") -> CloudEvent:
    """The SceneEvent that discovery would publish for a synthetic item."""
    from monitor.domain.scenes import scene_from_item as map_item

    settings = load_settings(CONFIG_DIR / "demo.yaml")
    collection = settings.collection(provider, item["collection"])
    data = map_item(item, city_id=city_id, provider=provider, stac_api="http://local/",
                    collection=item["collection"], modality=collection.modality,
                    asset_keys=collection.assets)
    return scene_event(data)


@pytest.fixture
def runtime(tmp_path: Path, small_archive: Archive) -> Iterator[Runtime]:
    settings = load_settings(CONFIG_DIR / "demo.yaml",
                             database={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
                             state={"url": str(tmp_path / "state")})
    db = Database(settings.database.url)
    db.init_schema()
    bus = EmbeddedBus(settings.bus.partitions)
    city = City("tiny", "Tiny", small_archive.aoi, small_archive.grid)
    rt = Runtime(settings=settings, bus=bus, db=db, cities={"tiny": city})
    bus.ensure_topics(rt.topics(), settings.bus.partitions)
    yield rt
    rt.close()


def register(rt: Runtime, event: CloudEvent) -> None:
    data = event.data
    assert isinstance(data, SceneData)
    rt.db.register_scene(event.id, city_id=data.city_id, source="test", provider=data.provider,
                         collection=data.collection, item_id=data.item_id,
                         modality=data.modality, acquired=data.acquired,
                         event_json=event.to_json().decode())
    rt.db.mark_scene(event.id, "published")


__all__ = ["Asset", "SMALL", "register", "runtime", "scene_from_item", "small_archive"]
