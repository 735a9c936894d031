"""The alerting service end to end on the embedded bus, with SQLite and real PostgreSQL:
ChangeEvents in, alerts in the database, AlertEvents out, idempotent on redelivery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.database import Database
from monitor.domain.events import ALERT_TYPE, parse_event
from monitor.pipeline.alerting import AlertingHandler, apply_change_event
from monitor.pipeline.runtime import run_alerting
from monitor.settings import Settings
from tests.integration.alerting_fixtures import make_change, make_database, rect_region


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    yield from make_database(request, tmp_path)


def alert_events(bus: EmbeddedBus, topic: str = "urban.alerts.v1") -> list:
    return [parse_event(m.value, ALERT_TYPE) for m in bus.records(topic)]


def wait_for(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_service_turns_change_events_into_alert_events(db: Database) -> None:
    settings = Settings()
    bus = EmbeddedBus(default_partitions=2)
    stop = threading.Event()
    thread = threading.Thread(target=run_alerting, args=(settings, bus, db, stop), daemon=True)
    thread.start()
    try:
        site = rect_region("r1", 0, 0, 40, 30)
        small = rect_region("tiny", 900, 900, 20, 20)            # under 0.1 ha: no alert
        first = make_change("stockholm", "S2A_1", [site, small])
        bus.publish(settings.bus.changes_topic, "stockholm", first.to_json())
        wait_for(lambda: len(alert_events(bus)) == 1)
        # The site grows and is confirmed: the same site, so the same alert, revision 2.
        grown = rect_region("r1", -10, 0, 60, 40, status="confirmed",
                            confirmed=date(2024, 3, 20), confidence=0.95)
        second = make_change("stockholm", "S1A_2", [grown],
                             acquired=datetime(2024, 3, 20, 5, tzinfo=UTC))
        bus.publish(settings.bus.changes_topic, "stockholm", second.to_json())
        wait_for(lambda: len(alert_events(bus)) == 2)
        # Redelivery of both ChangeEvents: no new revision, no new AlertEvent.
        bus.publish(settings.bus.changes_topic, "stockholm", first.to_json())
        bus.publish(settings.bus.changes_topic, "stockholm", second.to_json())
        wait_for(lambda: bus.lag(settings.bus.changes_topic, settings.bus.alerting_group) == 0)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=30)
    events = alert_events(bus)
    assert len(events) == 2
    assert [e.data.revision for e in events] == [1, 2]
    assert len({e.data.alert_id for e in events}) == 1
    assert [m.key for m in bus.records("urban.alerts.v1")] == ["stockholm", "stockholm"]
    latest = events[-1].data
    assert (latest.status, latest.confirmed, latest.first_detected) == (
        "confirmed", date(2024, 3, 20), date(2024, 3, 1))
    assert latest.scene_ids == ["S1A_2", "S2A_1"]
    assert latest.model_version == "test-model-1"
    assert latest.area_m2 == pytest.approx(2400, rel=1e-3)
    (record,) = db.alerts(city_id="stockholm")
    assert (record.id, record.revision, record.status) == (latest.alert_id, 2, "confirmed")
    assert record.geometry["type"] == "Polygon"
    # The outbox holds the two bus rows, both sent.
    rows = db.deliveries(alert_id=record.id)
    assert [(r.subscription_id, r.status) for r in rows] == [
        ("bus:urban.alerts.v1", "delivered")] * 2


def test_outbox_row_left_by_a_crash_is_published_once(db: Database) -> None:
    bus = EmbeddedBus(default_partitions=1)
    settings = Settings()
    change = make_change("paris", "S2B_9", [rect_region("r", 0, 0, 50, 50)]).data
    # Step 2 happened (alert + outbox row saved), then the process died before publishing.
    events = apply_change_event(db, change, rules=AlertingHandler(
        db, bus, settings=settings.alerting, alerts_topic="urban.alerts.v1").rules,
        alerts_topic="urban.alerts.v1")
    assert len(events) == 1 and alert_events(bus) == []
    # Redelivery of the same ChangeEvent: no new revision, and the pending row goes out.
    handler = AlertingHandler(db, bus, settings=settings.alerting,
                              alerts_topic="urban.alerts.v1")
    handler(make_change("paris", "S2B_9", [rect_region("r", 0, 0, 50, 50)]))
    handler(make_change("paris", "S2B_9", [rect_region("r", 0, 0, 50, 50)]))
    published = alert_events(bus)
    assert [e.id for e in published] == [events[0].id]
