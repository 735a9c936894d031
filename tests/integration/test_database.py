"""The repository suite: the same tests on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from shapely.geometry import box, mapping
from sqlalchemy import create_engine, text

from monitor.adapters.database import SCHEMA_VERSION, Database
from monitor.domain.records import StoredAlert
from monitor.errors import DatabaseError


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'test.db'}")
        database.init_schema()
        yield database
        database.dispose()
        return
    admin_url: str = request.getfixturevalue("postgres_url")
    name = f"test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    database = Database(url)
    database.init_schema()
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def register(db: Database, item: str, city: str = "paris", day: int = 1) -> bool:
    return db.register_scene(
        f"id-{city}-{item}", city_id=city, source="s2", provider="earth-search",
        collection="sentinel-2-l2a", item_id=item, modality="s2",
        acquired=datetime(2024, 1, day, 10, tzinfo=UTC), event_json="{}")


def test_schema_is_versioned_and_init_is_idempotent(db: Database) -> None:
    assert db.schema_version() == SCHEMA_VERSION
    assert db.init_schema() == SCHEMA_VERSION  # a second start changes nothing


def test_newer_schema_is_refused(db: Database) -> None:
    from sqlmodel import Session

    from monitor.adapters.database import SchemaVersion

    with Session(db.engine) as s:
        row = s.get(SchemaVersion, 1)
        assert row is not None
        row.version = SCHEMA_VERSION + 1
        s.add(row)
        s.commit()
    with pytest.raises(DatabaseError, match="newer than this program"):
        db.init_schema()


def test_a_version_3_database_gains_the_revision_table_and_keeps_its_alerts(db: Database) -> None:
    from sqlmodel import Session

    from monitor.adapters.database import SchemaVersion

    alert = StoredAlert(id="old", city_id="paris", status="confirmed",
                        geometry=mapping(box(2.3, 48.8, 2.31, 48.81)), area_m2=900.0,
                        first_detected=date(2024, 1, 1), confidence=0.8, model_version="m")
    db.save_alert(alert)
    with Session(db.engine) as s:  # as a version-3 database was: no alert_revision table
        s.exec(text("DROP TABLE alert_revision"))  # type: ignore[call-overload]
        row = s.get(SchemaVersion, 1)
        assert row is not None
        row.version = 3
        s.add(row)
        s.commit()
    assert db.init_schema() == SCHEMA_VERSION == 4
    assert db.get_alert("old") is not None and db.alert_revision("old", 1) is None
    db.save_alert_changes([replace(alert, revision=2, status="confirmed")], [],
                          moved_by=["S2B_20240301"])
    kept = db.alert_revision("old", 2)
    assert kept is not None and kept.moved_by == ("S2B_20240301",)
    assert kept.alert.area_m2 == 900.0 and kept.alert.first_detected == date(2024, 1, 1)


def test_scene_registry_deduplicates_and_tracks_each_stage(db: Database) -> None:
    assert register(db, "A") is True
    assert register(db, "A") is False  # same (city, collection, item): not new
    assert register(db, "A", city="rome") is True  # another city sees the same item
    assert db.known_item_ids("paris", "sentinel-2-l2a", ["A", "B"]) == {"A"}
    scene_id = "id-paris-A"
    for status in ("published", "processing", "processed"):
        db.mark_scene(scene_id, status)
    row = db.scene(scene_id)
    assert row is not None and row.status == "processed"
    assert row.discovered_at <= row.published_at <= row.processing_at <= row.processed_at  # type: ignore[operator]
    assert row.attempts == 1
    db.mark_scene("id-rome-A", "skipped", "fully cloudy over the city")
    assert db.scene("id-rome-A").reason == "fully cloudy over the city"  # type: ignore[union-attr]
    assert db.scene_counts() == {"processed": 1, "skipped": 1}
    with pytest.raises(DatabaseError, match="not in the scene registry"):
        db.mark_scene("nope", "published")


def test_scenes_come_back_in_acquisition_order(db: Database) -> None:
    for item, day in (("c", 3), ("a", 1), ("b", 2)):
        register(db, item, day=day)
    assert [s.item_id for s in db.scenes(city_id="paris")] == ["a", "b", "c"]
    db.mark_scene("id-paris-b", "published")
    assert [s.item_id for s in db.scenes(statuses=["discovered"])] == ["a", "c"]


def test_watermark_only_moves_forward(db: Database) -> None:
    t0 = datetime(2024, 1, 10, tzinfo=UTC)
    db.set_watermark("paris", "s2", last_acquired=t0, polled_at=t0)
    db.set_watermark("paris", "s2", last_acquired=t0 - timedelta(days=3), polled_at=t0 + timedelta(hours=1))
    mark = db.watermark("paris", "s2")
    assert mark is not None and mark.last_acquired == t0
    assert mark.last_polled_at == t0 + timedelta(hours=1)


def test_skipped_items_are_recorded_once(db: Database) -> None:
    assert db.record_skipped_item("paris", "c", "bad", "no datetime") is True
    assert db.record_skipped_item("paris", "c", "bad", "no datetime") is False
    assert [i.item_id for i in db.skipped_items("paris")] == ["bad"]


def test_alerts_upsert_and_filter_by_bbox(db: Database) -> None:
    alert = StoredAlert(id="a1", city_id="paris", status="first",
                        geometry=dict(mapping(box(2.0, 48.0, 2.01, 48.01))), area_m2=1000,
                        first_detected=date(2024, 1, 1), confidence=0.6, model_version="m")
    db.save_alert(alert)
    alert = replace(alert, status="confirmed", revision=2)
    db.save_alert(alert)
    rows = db.alerts(city_id="paris")
    assert len(rows) == 1 and rows[0].status == "confirmed" and rows[0].revision == 2
    assert db.alerts(bbox=(2.005, 48.005, 3, 49))
    assert not db.alerts(bbox=(3, 49, 4, 50))


def test_cities_round_trip(db: Database) -> None:
    db.upsert_city("paris", "Paris", {"type": "Point", "coordinates": [2, 48]}, {"epsg": 32631},
                   population={2020: 2.1e6})
    db.upsert_city("paris", "Paris (renamed)", {"type": "Point", "coordinates": [2, 48]}, {"epsg": 32631})
    (city,) = db.cities()
    assert city.name == "Paris (renamed)"


def test_unreachable_database_is_a_clear_error() -> None:
    database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="unavailable"):
        database.init_schema()
