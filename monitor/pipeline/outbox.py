"""The outbox: alert notifications written with the alert, then sent until they arrive.

Every alert revision is saved together with one outbox row (``Delivery``) per matching
webhook subscription and one for the alerts topic, in the same transaction
(``AlertRepository.save_alert_changes``). Dispatchers then send due rows:

- :func:`publish_pending` hands bus rows to the bus (topic ``urban.alerts.v1``, key = city);
- :func:`dispatch_due` POSTs webhook rows (signed, see ``monitor.adapters.webhooks``).

A failed attempt is retried after ``backoff * 2**(attempts-1)`` seconds, capped at
``max_backoff`` (5 s, 10 s, 20 s ... 300 s by default), so a subscriber that is down for an
hour receives everything within minutes of coming back. Rows still failing
``give_up_after_h`` after they were queued become ``failed`` (kept in the delivery log).
Rows are claimed with a compare-and-set before sending, so several dispatchers can run.
Delivery is at-least-once: a receiver de-duplicates on the event id header.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from monitor.adapters.webhooks import redact_url
from monitor.domain.events import AlertData, CloudEvent
from monitor.domain.records import Delivery, Subscription
from monitor.domain.vocabulary import as_utc
from monitor.errors import DatabaseError
from monitor.ports import Bus, DeliveryOutbox, SubscriptionRepository, WebhookClient
from monitor.settings import AlertingSettings

log = logging.getLogger(__name__)

BUS_CHANNEL_PREFIX = "bus:"  # outbox rows for a bus topic use "bus:<topic>" as subscriber


@dataclass
class DispatchStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


def retry_delay_s(attempts: int, backoff_s: float, max_backoff_s: float) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (capped doubling)."""
    return min(backoff_s * 2 ** max(attempts - 1, 0), max_backoff_s)


class DispatchStore(DeliveryOutbox, SubscriptionRepository, Protocol):
    """The outbox and the subscriptions its webhook rows go to."""


def subscription_matches(subscription: Subscription, alert: AlertData) -> bool:
    """A subscription's filter: cities (empty = all), statuses (empty = all), confidence."""
    if subscription.cities and alert.city_id not in subscription.cities:
        return False
    if subscription.statuses and alert.status not in subscription.statuses:
        return False
    return alert.confidence >= subscription.min_confidence


def plan_deliveries(event: CloudEvent, subscriptions: Sequence[Subscription],
                    bus_topic: str | None) -> list[Delivery]:
    """Outbox rows for one AlertEvent: one per matching webhook, one for the bus topic."""
    data = event.data
    assert isinstance(data, AlertData)
    payload = event.to_json().decode("utf-8")
    rows = [Delivery(subscription_id=s.id, event_id=event.id, alert_id=data.alert_id,
                     payload=payload, city_id=data.city_id)
            for s in subscriptions if s.active and subscription_matches(s, data)]
    if bus_topic:
        rows.append(Delivery(subscription_id=BUS_CHANNEL_PREFIX + bus_topic, event_id=event.id,
                             alert_id=data.alert_id, payload=payload, city_id=data.city_id))
    return rows


def publish_pending(db: DeliveryOutbox, bus: Bus, *, now: datetime | None = None,
                    limit: int = 500, unmarked: set[int] | None = None) -> int:
    """Publish due bus rows (key = city id) and mark them delivered; returns how many.

    ``unmarked`` (kept by the caller between calls) holds rows the bus took but the
    database could not mark (it went down in between): they are marked, not published a
    second time. Only a crash in that window still sends a copy (same event id)."""
    now = now or datetime.now(UTC)
    unmarked = unmarked if unmarked is not None else set()
    sent = 0
    while True:
        rows = db.due_deliveries(now, limit=limit, channel_prefix=BUS_CHANNEL_PREFIX)
        if not rows:
            return sent
        ids: list[int] = []
        batches: dict[str, list[tuple[int, str, bytes]]] = {}
        for row in rows:
            assert row.id is not None
            ids.append(row.id)
            if row.id not in unmarked:
                topic = row.subscription_id.removeprefix(BUS_CHANNEL_PREFIX)
                # key = city id (the event's subject); rows stay in outbox order per topic
                batches.setdefault(topic, []).append(
                    (row.id, row.city_id, row.payload.encode("utf-8")))
        for topic, batch in batches.items():
            # one acknowledgement wait for the batch, not one per record; BusError propagates
            bus.publish_many(topic, [(key, value) for _, key, value in batch])
            unmarked.update(row_id for row_id, _, _ in batch)
        bus.flush()  # the bus has them all before any is marked delivered
        db.mark_delivered(ids, attempted_at=now)  # one statement for the round
        unmarked.difference_update(ids)
        sent += len(ids)
        if len(rows) < limit:
            return sent


def _record_row_failure(db: DispatchStore, row: Delivery, now: datetime,
                        settings: AlertingSettings, exc: Exception) -> None:
    """Note an unexpected error on one row (retried with backoff) where the database lets."""
    if row.id is None:
        return
    delay = retry_delay_s(row.attempts + 1, settings.webhook_backoff_s,
                          settings.webhook_max_backoff_s)
    try:
        db.finish_delivery(row.id, status="pending", attempted_at=now,
                           next_attempt_at=now + timedelta(seconds=delay),
                           error=f"internal error: {type(exc).__name__}")
    except Exception:  # noqa: BLE001 - the database may be the problem; the lease expires
        log.warning("could not record the failure of delivery %s", row.id)


def dispatch_due(db: DispatchStore, now: datetime | None = None, *,
                 sender: WebhookClient | None = None,
                 settings: AlertingSettings | None = None) -> DispatchStats:
    """Send every due webhook row once; schedule retries for failures. ``now`` may be a
    simulated clock (tests); it is also the timestamp that is signed. Without a
    ``sender`` one is opened (and closed) for this call."""
    settings = settings or AlertingSettings()
    now = as_utc(now or datetime.now(UTC))
    stats = DispatchStats()
    rows = db.due_deliveries(now, limit=settings.dispatch_batch,
                             exclude_prefix=BUS_CHANNEL_PREFIX)
    if not rows:
        return stats  # nothing due: no HTTP client is opened (its TLS context costs ~0.1 s)
    own_sender = sender is None
    if sender is None:
        from monitor.adapters.webhooks import WebhookSender  # the default adapter

        sender = WebhookSender(timeout_s=settings.webhook_timeout_s,
                               allow=settings.webhook_allow_private)
    subscriptions: dict[str, Subscription | None] = {}
    try:
        for row in rows:
            try:
                assert row.id is not None and row.next_attempt_at is not None
                lease = now + timedelta(seconds=settings.webhook_timeout_s + 30)
                if not db.claim_delivery(row.id, row.next_attempt_at, lease):
                    stats.skipped += 1  # another dispatcher took it
                    continue
                if row.subscription_id not in subscriptions:
                    subscriptions[row.subscription_id] = db.subscription(row.subscription_id)
                sub = subscriptions[row.subscription_id]
                if sub is None or not sub.active:
                    db.finish_delivery(row.id, status="cancelled", attempted_at=now,
                                       error="subscription deleted")
                    stats.skipped += 1
                    continue
                outcome = sender.send(sub.url, row.payload.encode("utf-8"), secret=sub.secret,
                                      event_id=row.event_id, delivery_id=row.id,
                                      timestamp=int(now.timestamp()))
                if outcome.ok:
                    db.finish_delivery(row.id, status="delivered", attempted_at=now,
                                       status_code=outcome.status_code)
                    stats.delivered += 1
                    continue
                attempts = row.attempts + 1
                age = now - (row.created_at or now)
                if age >= timedelta(hours=settings.webhook_give_up_after_h):
                    db.finish_delivery(row.id, status="failed", attempted_at=now,
                                       status_code=outcome.status_code, error=outcome.error)
                    stats.failed += 1
                    log.error("webhook delivery %s to %s failed for good after %d attempts: %s",
                              row.id, redact_url(sub.url), attempts, outcome.error)
                    continue
                delay = retry_delay_s(attempts, settings.webhook_backoff_s,
                                      settings.webhook_max_backoff_s)
                db.finish_delivery(row.id, status="pending", attempted_at=now,
                                   next_attempt_at=now + timedelta(seconds=delay),
                                   status_code=outcome.status_code, error=outcome.error)
                stats.retried += 1
                stats.errors.append(outcome.error or "")
                log.info("webhook delivery %s to %s failed (attempt %d): %s; retry in %.0f s",
                         row.id, redact_url(sub.url), attempts, outcome.error, delay)
            except DatabaseError:
                raise  # the database is down: the caller retries the whole round
            except Exception as exc:  # noqa: BLE001 - one bad row never stops the loop
                stats.errors.append(f"delivery {row.id}: {type(exc).__name__}")
                log.exception("webhook delivery %s: %s; the dispatcher goes on",
                              row.id, type(exc).__name__)
                _record_row_failure(db, row, now, settings, exc)
    finally:
        if own_sender:
            sender.close()
    return stats
