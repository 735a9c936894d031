"""The discovery cycle (``monitor.pipeline.discovery.DiscoveryCycle``) with fakes of its
ports: a STAC catalog per source, the scene registry and the bus. What is asserted is the
cycle's own logic: search windows and watermarks, de-duplication, acquisition order,
filters, malformed items, and what an API or bus outage leaves behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shapely.geometry import box

from monitor.domain.events import SCENE_TYPE, parse_event
from monitor.pipeline.discovery import DiscoveryCycle, Strategy
from monitor.settings import Settings, SourceSettings
from tests.unit.fakes import FakeCatalog, MemoryRegistry, RecordingBus

SCENES = "urban.scenes.v1"
NOW = datetime(2025, 8, 1, tzinfo=UTC)
S2_ASSETS = {b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22", "scl")}
# Two cities close together (one batch) and one far away.
CITIES = [
    {"id": "rome", "name": "Rome", "bbox": [12.40, 41.80, 12.60, 41.98]},
    {"id": "tivoli", "name": "Tivoli", "bbox": [12.78, 41.94, 12.83, 41.98]},
    {"id": "oslo", "name": "Oslo", "bbox": [10.60, 59.85, 10.90, 60.00]},
]


def settings(lookback_days: float = 3) -> Settings:
    return Settings(
        providers={"es": {"url": "https://stac.example/v1", "collections": {
            "sentinel-2-l2a": {"modality": "s2", "assets": S2_ASSETS}}}},
        sources=[{"name": "es-s2", "provider": "es", "collection": "sentinel-2-l2a",
                  "lookback_days": lookback_days, "max_cloud_cover": 50}],
        cities=CITIES)


def item(item_id: str, when: datetime, footprint: tuple[float, float, float, float], *,
         cloud: float = 10.0, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "Feature", "id": item_id, "collection": "sentinel-2-l2a",
        "geometry": dict(box(*footprint).__geo_interface__), "bbox": list(footprint),
        "properties": {"datetime": when.isoformat(), "eo:cloud_cover": cloud},
        "assets": {k: {"href": f"https://data.example/{item_id}/{k}.tif"} for k in S2_ASSETS},
    }
    out.update(changes)
    return out


LAZIO = (12.0, 41.5, 13.2, 42.3)  # a tile over Rome and Tivoli
NORWAY = (10.0, 59.5, 11.5, 60.5)


class Fixture:
    def __init__(self, items: list[dict[str, Any]], *, strategy: Strategy = "batched",
                 lookback_days: float = 3) -> None:
        self.catalog = FakeCatalog(items)
        self.opened: list[str] = []
        self.bus = RecordingBus()
        self.registry = MemoryRegistry()
        self.settings = settings(lookback_days)

        def catalog_for(source: SourceSettings) -> FakeCatalog:
            self.opened.append(source.name)
            return self.catalog

        self.cycle = DiscoveryCycle(self.settings, self.bus, self.registry,
                                    catalog_for=catalog_for, strategy=strategy, max_workers=1)
        self.source = self.settings.sources[0]

    def published(self) -> list[tuple[str, str]]:
        """(city id, item id) of every SceneEvent on the bus, in order."""
        out = []
        for key, value in self.bus.records.get(SCENES, []):
            event = parse_event(value, SCENE_TYPE)
            assert key == event.subject  # key = city id: one city, one partition, in order
            out.append((event.subject, event.data.item_id))  # type: ignore[union-attr]
        return out


def test_new_items_are_registered_published_in_acquisition_order_and_move_the_watermark() -> None:
    f = Fixture([
        item("B", NOW - timedelta(hours=5), LAZIO),
        item("A", NOW - timedelta(hours=30), LAZIO),
        item("N", NOW - timedelta(hours=2), NORWAY),
        item("old", NOW - timedelta(days=9), LAZIO),  # before the first window
    ])
    report = f.cycle.poll_source(f.source, NOW)
    assert sorted(f.published()) == sorted([("rome", "A"), ("rome", "B"), ("tivoli", "A"),
                                            ("tivoli", "B"), ("oslo", "N")])
    assert [i for c, i in f.published() if c == "rome"] == ["A", "B"]
    assert report.published == 5 and report.errors == {}
    assert set(f.registry.statuses().values()) == {"published"}
    mark = f.registry.watermark("rome", "es-s2")
    assert mark is not None and mark.last_acquired == NOW - timedelta(hours=5)
    assert mark.last_polled_at == NOW and mark.last_error is None
    assert f.registry.watermark("oslo", "es-s2").last_acquired == NOW - timedelta(hours=2)  # type: ignore[union-attr]
    # The first window of a city is (now - lookback, now).
    assert all(s.start == NOW - timedelta(days=3) and s.end == NOW for s in f.catalog.searches)
    assert f.opened == ["es-s2"]  # one catalog per source, opened once


def test_batched_polls_search_once_per_group_of_nearby_cities_naive_once_per_city() -> None:
    items = [item("A", NOW - timedelta(hours=3), LAZIO), item("N", NOW - timedelta(hours=3), NORWAY)]
    batched = Fixture(items, strategy="batched")
    naive = Fixture(items, strategy="naive")
    b = batched.cycle.poll_source(batched.source, NOW)
    n = naive.cycle.poll_source(naive.source, NOW)
    assert len(batched.catalog.searches) == b.searches == 1
    assert len(naive.catalog.searches) == n.searches == 3
    assert b.requests == 1 and n.requests == 3
    assert sorted(batched.published()) == sorted(naive.published())


def test_a_second_poll_publishes_only_what_is_new_and_searches_from_the_watermark() -> None:
    f = Fixture([item("A", NOW - timedelta(hours=30), LAZIO)])
    f.cycle.poll_source(f.source, NOW)
    f.catalog.items.append(item("B", NOW + timedelta(hours=1), LAZIO))
    # Listed late: acquired before the watermark, within the lookback.
    f.catalog.items.append(item("late", NOW - timedelta(hours=40), LAZIO))
    later = NOW + timedelta(hours=2)
    report = f.cycle.poll_source(f.source, later)
    new = [p for p in f.published() if p[0] == "rome"]
    assert new == [("rome", "A"), ("rome", "late"), ("rome", "B")]
    assert report.duplicates == 2  # A, known to both cities of the batch
    assert report.late == 2  # "late" for rome and tivoli
    search = f.catalog.searches[-1]
    assert search.start == (NOW - timedelta(hours=30)) - timedelta(days=3)
    assert search.end == later


def test_unwanted_and_malformed_items_are_filtered_or_recorded_never_published() -> None:
    f = Fixture([
        item("cloudy", NOW - timedelta(hours=3), LAZIO, cloud=90.0),
        item("no-assets", NOW - timedelta(hours=3), LAZIO, assets={}),
        item("good", NOW - timedelta(hours=4), LAZIO),
    ])
    report = f.cycle.poll_source(f.source, NOW, city_ids=["rome"])
    assert f.published() == [("rome", "good")]
    assert report.filtered == 1 and report.skipped == 1
    (skipped,) = f.registry.skipped_items("rome")
    assert skipped.item_id == "no-assets" and "assets" in skipped.reason
    assert "cloudy" not in f.registry.statuses()


def test_an_api_outage_is_reported_and_recorded_and_the_next_poll_catches_up() -> None:
    f = Fixture([item("A", NOW - timedelta(hours=3), LAZIO)])
    f.catalog.failures = 1
    report = f.cycle.poll_source(f.source, NOW, city_ids=["rome"])
    assert set(report.errors) == {"rome"} and "503" in report.errors["rome"]
    assert f.published() == []
    mark = f.registry.watermark("rome", "es-s2")
    assert mark is not None and mark.last_acquired is None and "503" in (mark.last_error or "")
    again = f.cycle.poll_source(f.source, NOW + timedelta(minutes=15), city_ids=["rome"])
    assert again.errors == {} and f.published() == [("rome", "A")]
    assert f.registry.watermark("rome", "es-s2").last_error is None  # type: ignore[union-attr]


def test_scenes_the_bus_refused_stay_discovered_and_go_out_on_the_next_poll() -> None:
    f = Fixture([item("A", NOW - timedelta(hours=3), LAZIO)])
    f.bus.fail = True
    report = f.cycle.poll_source(f.source, NOW, city_ids=["rome"])
    assert report.published == 0 and report.pending == 1
    assert f.registry.statuses() == {"A": "discovered"}
    assert "publishing failed" in (f.registry.watermark("rome", "es-s2").last_error or "")  # type: ignore[union-attr]
    f.bus.fail = False
    again = f.cycle.poll_source(f.source, NOW + timedelta(minutes=15), city_ids=["rome"])
    assert again.republished == 1 and again.pending == 0 and again.duplicates == 1
    assert f.published() == [("rome", "A")]
    assert f.registry.statuses() == {"A": "published"}
