"""Webhooks against a real local HTTP receiver: signed, filtered, retried from the outbox
with capped backoff; a receiver down for an hour (simulated clock) loses nothing."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.database import Database
from monitor.adapters.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    verify_signature,
)
from monitor.domain.alerts import AlertRules
from monitor.domain.records import Subscription
from monitor.pipeline.alerting import apply_change_event
from monitor.pipeline.outbox import dispatch_due
from monitor.pipeline.runtime import run_alerting
from monitor.settings import AlertingSettings, Settings
from tests.integration.alerting_fixtures import (
    LOOPBACK_ALLOW,
    make_change,
    make_database,
    rect_region,
    start_receiver,
)

SECRET = "s3cr3t-for-tests"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    yield from make_database(request, tmp_path)


def subscribe(db: Database, url: str, *, cities: list[str] | None = None,
              statuses: list[str] | None = None, min_confidence: float = 0.0) -> str:
    sub_id = uuid.uuid4().hex[:16]
    db.add_subscription(Subscription(id=sub_id, name="twin", url=url, secret=SECRET,
                                     cities=cities or [], statuses=statuses or [],
                                     min_confidence=min_confidence))
    return sub_id


def feed_alerts(db: Database) -> list:
    """Three alert revisions in stockholm (two sites, one confirmed later), one in paris."""
    rules = AlertRules()
    events = []
    events += apply_change_event(db, make_change("stockholm", "a", [
        rect_region("s1", 0, 0, 40, 30), rect_region("s2", 500, 0, 40, 40)]).data,
        rules=rules, alerts_topic=None)
    events += apply_change_event(db, make_change("stockholm", "b", [
        rect_region("s1", 0, 0, 40, 30, status="confirmed", confirmed=date(2024, 3, 9),
                    confidence=0.9)], acquired=datetime(2024, 3, 9, tzinfo=UTC)).data,
        rules=rules, alerts_topic=None)
    events += apply_change_event(db, make_change("paris", "c", [
        rect_region("p1", 0, 0, 50, 50)]).data, rules=rules, alerts_topic=None)
    return events


def test_receiver_down_for_an_hour_gets_every_alert_once_signed(db: Database) -> None:
    receiver = start_receiver(SECRET)
    try:
        sub_all = subscribe(db, receiver.url, cities=["stockholm"])
        confirmed_only = start_receiver(SECRET)
        subscribe(db, confirmed_only.url, statuses=["confirmed"], min_confidence=0.8)
        events = feed_alerts(db)
        stockholm = {e.id for e in events if e.subject == "stockholm"}
        assert len(events) == 4 and len(stockholm) == 3
        settings = AlertingSettings(webhook_backoff_s=5, webhook_max_backoff_s=300,
                                    webhook_allow_private=LOOPBACK_ALLOW)
        receiver.failing = True
        clock = datetime.now(UTC) + timedelta(seconds=1)
        start = clock
        attempts_at: list[datetime] = []
        with WebhookSender(timeout_s=5, allow=LOOPBACK_ALLOW) as sender:
            while clock < start + timedelta(hours=1):      # one simulated hour down
                stats = dispatch_due(db, clock, sender=sender, settings=settings)
                if stats.retried:
                    attempts_at.append(clock)
                clock += timedelta(seconds=15)
            rows = db.deliveries(subscription_id=sub_all)
            assert {r.status for r in rows} == {"pending"}  # nothing given up, nothing lost
            # Capped exponential backoff: ~17 attempts in the hour, never more than 5 min apart.
            assert 12 <= rows[0].attempts <= 20
            gaps = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:],
                                                                  strict=False)]
            assert max(gaps) <= 300 + 15
            assert rows[0].last_status_code == 503
            receiver.failing = False                        # the subscriber is back
            deadline = clock + timedelta(minutes=10)
            while clock < deadline and len(receiver.accepted) < len(stockholm):
                dispatch_due(db, clock, sender=sender, settings=settings)
                clock += timedelta(seconds=15)
            for _ in range(5):                              # later rounds send nothing more
                clock += timedelta(minutes=10)
                dispatch_due(db, clock, sender=sender, settings=settings)
        assert sorted(receiver.accepted) == sorted(stockholm)  # each exactly once, by id
        assert receiver.signatures_valid()
        assert all(r.status == "delivered" for r in db.deliveries(subscription_id=sub_all))
        last = receiver.requests[-1]
        headers = last["headers"]
        assert verify_signature(SECRET, last["body"], headers[TIMESTAMP_HEADER],  # type: ignore[index,arg-type]
                                headers[SIGNATURE_HEADER], now=float(headers[TIMESTAMP_HEADER]))  # type: ignore[index]
        assert not verify_signature("wrong", last["body"], headers[TIMESTAMP_HEADER],  # type: ignore[index,arg-type]
                                    headers[SIGNATURE_HEADER], now=float(headers[TIMESTAMP_HEADER]))  # type: ignore[index]
        assert not verify_signature(SECRET, last["body"], headers[TIMESTAMP_HEADER],  # type: ignore[index,arg-type]
                                    headers[SIGNATURE_HEADER],  # type: ignore[index]
                                    now=float(headers[TIMESTAMP_HEADER]) + 3600)  # replay
        # The filtered subscription got only the confirmed revision (confidence 0.9).
        confirmed_ids = [json.loads(r["body"])["data"]["status"]  # type: ignore[arg-type]
                         for r in confirmed_only.requests]
        assert confirmed_ids == ["confirmed"]
        confirmed_only.server.shutdown()  # type: ignore[union-attr]
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]


def test_delivery_gives_up_after_the_configured_age_and_deleted_subscription_cancels(
        db: Database) -> None:
    receiver = start_receiver(SECRET)
    receiver.failing = True
    try:
        sub = subscribe(db, receiver.url)
        gone = subscribe(db, receiver.url)
        feed_alerts(db)
        assert db.deactivate_subscription(gone)
        settings = AlertingSettings(webhook_give_up_after_h=1,
                                    webhook_allow_private=LOOPBACK_ALLOW)
        clock = datetime.now(UTC) + timedelta(hours=2)
        dispatch_due(db, clock, settings=settings)
        assert {r.status for r in db.deliveries(subscription_id=sub)} == {"failed"}
        assert {r.status for r in db.deliveries(subscription_id=gone)} == {"cancelled"}
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]


def test_live_service_retries_until_a_flaky_receiver_recovers(db: Database) -> None:
    receiver = start_receiver(SECRET)
    receiver.failing = True
    subscribe(db, receiver.url)
    settings = Settings(alerting=AlertingSettings(webhook_backoff_s=0.1,
                                                  webhook_max_backoff_s=0.3,
                                                  dispatch_interval_s=0.05,
                                                  webhook_allow_private=LOOPBACK_ALLOW))
    bus = EmbeddedBus(default_partitions=1)
    stop = threading.Event()
    thread = threading.Thread(target=run_alerting, args=(settings, bus, db, stop), daemon=True)
    thread.start()
    try:
        for i in range(3):
            change = make_change("stockholm", f"scene-{i}", [rect_region(f"r{i}", i * 400, 0, 40, 40)])
            bus.publish(settings.bus.changes_topic, "stockholm", change.to_json())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(receiver.requests) < 6:
            time.sleep(0.05)
        assert len(receiver.requests) >= 6 and receiver.accepted == []
        receiver.failing = False
        while time.monotonic() < deadline + 10 and len(receiver.accepted) < 3:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
        receiver.server.shutdown()  # type: ignore[union-attr]
    published = {m.value and json.loads(m.value)["id"] for m in bus.records("urban.alerts.v1")}
    assert sorted(receiver.accepted) == sorted(published) and len(published) == 3
    assert receiver.signatures_valid()


def test_a_receiver_verifies_a_delivery_with_the_standard_webhooks_library() -> None:
    """The Standard Webhooks headers of a real delivery verify with the `standardwebhooks`
    library (the three-line receiver of the README); a changed body or another secret
    does not."""
    from standardwebhooks import Webhook, WebhookVerificationError

    receiver = start_receiver(SECRET)
    body = json.dumps({"specversion": "1.0", "id": "evt-std-1", "type": "t",
                       "source": "s", "data": {"status": "confirmed"}}).encode()
    try:
        with WebhookSender(timeout_s=5.0, allow=LOOPBACK_ALLOW) as sender:
            outcome = sender.send(receiver.url, body, secret=SECRET, event_id="evt-std-1",
                                  delivery_id=7, timestamp=int(time.time()))
        assert outcome.ok, outcome.error
        got = receiver.requests[-1]
        headers = {k: str(v) for k, v in got["headers"].items()}  # type: ignore[union-attr]
        raw = got["body"]
        assert isinstance(raw, bytes)
        assert headers["webhook-id"] == "evt-std-1"
        event = Webhook(SECRET.encode()).verify(raw, headers)
        assert event["data"]["status"] == "confirmed"
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET.encode()).verify(raw.replace(b"confirmed", b"retracted"), headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(b"another-secret-entirely").verify(raw, headers)
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]
