"""Scene registry transitions that races between the scheduler and the workers produce.

Found by the fault suite (``urban-monitor reliability faults``): the scheduler marks a scene
``published`` after Kafka acknowledges it; an idle worker can consume and finish the scene
before that, and the late ``published`` used to overwrite ``processed`` for good.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.adapters.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path) -> Database:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    else:
        from tools.reliability.infrastructure import drop_database, fresh_database

        admin = request.getfixturevalue("postgres_url")
        url = fresh_database(admin, prefix="registry")
        request.addfinalizer(lambda: drop_database(admin, url))
        db = Database(url)
    db.init_schema()
    db.register_scene("scene-1", city_id="c", source="s2", provider="p", collection="col",
                      item_id="item-1", modality="s2", acquired=datetime(2020, 1, 1, tzinfo=UTC),
                      event_json="{}")
    yield db
    db.dispose()


@pytest.mark.parametrize("later", ["processing", "processed", "skipped", "dead_lettered"])
def test_late_publish_acknowledgement_keeps_the_worker_status(registry: Database,
                                                              later: str) -> None:
    registry.mark_scene("scene-1", later, "reason" if later != "processing" else None)
    registry.mark_scene("scene-1", "published")
    row = registry.scene("scene-1")
    assert row is not None
    assert row.status == later
    assert row.published_at is not None


def test_publish_moves_a_discovered_scene_on(registry: Database) -> None:
    registry.mark_scene("scene-1", "published")
    row = registry.scene("scene-1")
    assert row is not None and row.status == "published"
