"""Webhook subscriptions and the delivery outbox, in SQL.

Implements ``monitor.ports.SubscriptionRepository`` and ``DeliveryOutbox``; returns
``monitor.domain.records.Subscription`` (city and status filters parsed) and ``Delivery``
(its bus key, the AlertEvent's subject, read from the payload here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from monitor.adapters.sql.engine import SqlRepository
from monitor.adapters.sql.tables import DeliveryRow, SubscriptionRow
from monitor.domain.records import Delivery, Subscription
from monitor.domain.vocabulary import as_utc
from monitor.errors import DatabaseError


def _subscription(row: SubscriptionRow) -> Subscription:
    return Subscription(id=row.id, name=row.name, url=row.url, secret=row.secret,
                        cities=json.loads(row.cities_json or "[]"),
                        statuses=json.loads(row.statuses_json or "[]"),
                        min_confidence=row.min_confidence, active=row.active,
                        created_at=as_utc(row.created_at))


def _subject(payload: str) -> str:
    try:
        subject = json.loads(payload).get("subject")
    except (ValueError, AttributeError):
        return "unknown"
    return str(subject) if subject else "unknown"


def _delivery(row: DeliveryRow) -> Delivery:
    assert row.id is not None  # read back from the table: always numbered
    return Delivery(
        subscription_id=row.subscription_id, event_id=row.event_id, alert_id=row.alert_id,
        payload=row.payload, city_id=_subject(row.payload), id=row.id, status=row.status,
        attempts=row.attempts, next_attempt_at=as_utc(row.next_attempt_at),
        last_error=row.last_error, last_status_code=row.last_status_code,
        created_at=as_utc(row.created_at),
        delivered_at=as_utc(row.delivered_at) if row.delivered_at else None)


class SqlSubscriptions(SqlRepository):
    """Webhook subscriptions (deleting one deactivates it and cancels its deliveries)."""

    def add_subscription(self, subscription: Subscription) -> Subscription:
        def op(s: Session) -> Subscription:
            row = SubscriptionRow(
                id=subscription.id, name=subscription.name, url=subscription.url,
                secret=subscription.secret, cities_json=json.dumps(list(subscription.cities)),
                statuses_json=json.dumps(list(subscription.statuses)),
                min_confidence=subscription.min_confidence, active=subscription.active)
            if subscription.created_at is not None:
                row.created_at = as_utc(subscription.created_at)
            s.add(row)
            s.flush()
            return _subscription(row)
        return self._run(op)

    def subscription(self, subscription_id: str) -> Subscription | None:
        def op(s: Session) -> Subscription | None:
            row = s.get(SubscriptionRow, subscription_id)
            return _subscription(row) if row is not None else None
        return self._run(op)

    def subscriptions(self, *, active_only: bool = True, limit: int | None = None,
                      offset: int = 0) -> list[Subscription]:
        def op(s: Session) -> list[Subscription]:
            q = select(SubscriptionRow)
            if active_only:
                q = q.where(SubscriptionRow.active == True)  # noqa: E712 (SQL, not Python)
            q = q.order_by(SubscriptionRow.created_at, SubscriptionRow.id)  # type: ignore[arg-type]
            if offset:
                q = q.offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return [_subscription(row) for row in s.exec(q)]
        return self._run(op)

    def deactivate_subscription(self, subscription_id: str) -> bool:
        """Stop a subscription; its pending deliveries are cancelled. False if unknown."""
        def op(s: Session) -> bool:
            row = s.get(SubscriptionRow, subscription_id)
            if row is None or not row.active:
                return False
            row.active = False
            s.add(row)
            for delivery in s.exec(select(DeliveryRow).where(
                    DeliveryRow.subscription_id == subscription_id,
                    DeliveryRow.status == "pending")):
                delivery.status = "cancelled"
                s.add(delivery)
            return True
        return self._run(op)


class SqlOutbox(SqlRepository):
    """The outbox rows (written with their alert revisions by the alert repository)."""

    def due_deliveries(self, now: datetime, *, limit: int = 100,
                       channel_prefix: str | None = None,
                       exclude_prefix: str | None = None) -> list[Delivery]:
        """Pending outbox rows whose next attempt is due, oldest first."""
        def op(s: Session) -> list[Delivery]:
            q = select(DeliveryRow).where(DeliveryRow.status == "pending",
                                          DeliveryRow.next_attempt_at <= as_utc(now))
            if channel_prefix:
                q = q.where(col(DeliveryRow.subscription_id).startswith(channel_prefix))
            if exclude_prefix:
                q = q.where(~col(DeliveryRow.subscription_id).startswith(exclude_prefix))
            q = q.order_by(DeliveryRow.id).limit(limit)  # type: ignore[arg-type]
            return [_delivery(row) for row in s.exec(q)]
        return self._run(op)

    def claim_delivery(self, delivery_id: int, seen_next_attempt_at: datetime,
                       lease_until: datetime) -> bool:
        """Take a due row for one attempt (compare-and-set on ``next_attempt_at``), so two
        dispatchers never send the same row at once. False if another one took it."""
        def op(s: Session) -> bool:
            result = s.exec(update(DeliveryRow).where(
                col(DeliveryRow.id) == delivery_id, col(DeliveryRow.status) == "pending",
                col(DeliveryRow.next_attempt_at) == as_utc(seen_next_attempt_at),
            ).values(next_attempt_at=as_utc(lease_until)))
            return bool(result.rowcount == 1)
        return self._run(op)

    def finish_delivery(self, delivery_id: int, *, status: str, attempted_at: datetime,
                        next_attempt_at: datetime | None = None,
                        status_code: int | None = None, error: str | None = None) -> None:
        def op(s: Session) -> None:
            row = s.get(DeliveryRow, delivery_id)
            if row is None:
                raise DatabaseError(f"delivery {delivery_id} is not in the outbox",
                                    "it may have been removed; nothing to do")
            row.status = status
            row.attempts += 1
            row.last_status_code = status_code
            row.last_error = error
            if status == "delivered":
                row.delivered_at = as_utc(attempted_at)
            if next_attempt_at is not None:
                row.next_attempt_at = as_utc(next_attempt_at)
            s.add(row)
        self._run(op)

    def mark_delivered(self, delivery_ids: Sequence[int], *, attempted_at: datetime) -> int:
        """Mark many rows delivered in one statement (the bus rows a publish round handed
        to the bus and saw flushed); returns how many were marked."""
        ids = list(dict.fromkeys(delivery_ids))

        def op(s: Session) -> int:
            marked = 0
            for start in range(0, len(ids), 500):
                result = s.exec(update(DeliveryRow).where(
                    col(DeliveryRow.id).in_(ids[start:start + 500])).values(
                    status="delivered", attempts=DeliveryRow.attempts + 1,
                    last_status_code=None, last_error=None,
                    delivered_at=as_utc(attempted_at)))
                marked += int(result.rowcount or 0)
            return marked
        return self._run(op) if ids else 0

    def deliveries(self, *, subscription_id: str | None = None, alert_id: str | None = None,
                   statuses: Sequence[str] | None = None, limit: int | None = 100,
                   offset: int = 0) -> list[Delivery]:
        def op(s: Session) -> list[Delivery]:
            q = select(DeliveryRow)
            if subscription_id:
                q = q.where(DeliveryRow.subscription_id == subscription_id)
            if alert_id:
                q = q.where(DeliveryRow.alert_id == alert_id)
            if statuses:
                q = q.where(DeliveryRow.status.in_(list(statuses)))  # type: ignore[attr-defined]
            q = q.order_by(DeliveryRow.id).offset(offset)  # type: ignore[arg-type]
            if limit is not None:
                q = q.limit(limit)
            return [_delivery(row) for row in s.exec(q)]
        return self._run(op)
