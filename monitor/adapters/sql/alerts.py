"""Alerts in SQL: one row per site (its latest revision) and the folded ChangeEvents.

Implements ``monitor.ports.AlertRepository``; returns ``monitor.domain.records.StoredAlert``
(GeoJSON geometry parsed, scene ids as a tuple, UTC timestamps). Each row keeps the
geometry's envelope (``minx`` .. ``maxy``) so that bbox searches filter in SQL; the exact
intersection is then tested here on the few envelope hits (without a spatial extension,
neither SQLite nor plain PostgreSQL can test polygons).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from shapely.geometry import box, shape
from sqlalchemy import and_, or_
from sqlmodel import Session, col, func, select

from monitor.adapters.sql.engine import SqlRepository, insert_rows
from monitor.adapters.sql.tables import (
    AlertRevisionRow,
    AlertRow,
    DeliveryRow,
    FoldedChangeRow,
    _now,
)
from monitor.domain.records import (
    AlertPage,
    AlertQuery,
    AlertRevision,
    Box,
    Delivery,
    StoredAlert,
)
from monitor.domain.vocabulary import as_utc


def _alert(row: AlertRow) -> StoredAlert:
    return StoredAlert(
        id=row.id, city_id=row.city_id, status=row.status, revision=row.revision,
        geometry=json.loads(row.geometry_json), area_m2=row.area_m2,
        first_detected=row.first_detected, confirmed=row.confirmed, retracted=row.retracted,
        change_date=row.change_date, confidence=row.confidence,
        model_version=row.model_version,
        scene_ids=tuple(json.loads(row.scene_ids_json or "[]")), site_id=row.site_id,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at))


def _row(alert: StoredAlert, stamp: datetime) -> AlertRow:
    minx, miny, maxx, maxy = shape(alert.geometry).bounds
    return AlertRow(
        id=alert.id, city_id=alert.city_id, status=alert.status, revision=alert.revision,
        geometry_json=json.dumps(alert.geometry), minx=minx, miny=miny, maxx=maxx, maxy=maxy,
        area_m2=alert.area_m2, first_detected=alert.first_detected, confirmed=alert.confirmed,
        retracted=alert.retracted, change_date=alert.change_date,
        confidence=alert.confidence, model_version=alert.model_version,
        scene_ids_json=json.dumps(list(alert.scene_ids)), site_id=alert.site_id,
        created_at=alert.created_at or stamp, updated_at=stamp)


def _row_values(alert: StoredAlert, stamp: datetime) -> dict[str, Any]:
    """:func:`_row` as column values (a bulk upsert takes plain values)."""
    minx, miny, maxx, maxy = shape(alert.geometry).bounds
    return {"id": alert.id, "city_id": alert.city_id, "status": alert.status,
            "revision": alert.revision, "geometry_json": json.dumps(alert.geometry),
            "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "area_m2": alert.area_m2,
            "first_detected": alert.first_detected, "confirmed": alert.confirmed,
            "retracted": alert.retracted, "change_date": alert.change_date,
            "confidence": alert.confidence, "model_version": alert.model_version,
            "scene_ids_json": json.dumps(list(alert.scene_ids)), "site_id": alert.site_id,
            "created_at": alert.created_at or stamp, "updated_at": stamp}


def _delivery_values(delivery: Delivery, stamp: datetime) -> dict[str, Any]:
    """A new outbox row's column values (the defaults of ``DeliveryRow``)."""
    return {"subscription_id": delivery.subscription_id, "event_id": delivery.event_id,
            "alert_id": delivery.alert_id, "payload": delivery.payload, "status": "pending",
            "attempts": 0, "next_attempt_at": stamp, "last_error": None,
            "last_status_code": None, "created_at": stamp, "delivered_at": None}


_DATES = ("first_detected", "confirmed", "retracted", "change_date")


def _alert_json(alert: StoredAlert) -> str:
    body = {k: getattr(alert, k) for k in (
        "id", "city_id", "status", "revision", "geometry", "area_m2", "confidence",
        "model_version", "site_id")}
    body.update({k: (d.isoformat() if (d := getattr(alert, k)) else None) for k in _DATES})
    body["scene_ids"] = list(alert.scene_ids)
    return json.dumps(body)


def _revision(row: AlertRevisionRow) -> AlertRevision:
    body = json.loads(row.alert_json)
    for k in _DATES:
        body[k] = date.fromisoformat(body[k]) if body.get(k) else None
    body["scene_ids"] = tuple(body.get("scene_ids", ()))
    return AlertRevision(alert=StoredAlert(**body, created_at=None, updated_at=None),
                         moved_by=tuple(json.loads(row.moved_by_json or "[]")),
                         recorded_at=as_utc(row.recorded_at))


def delivery_row(delivery: Delivery) -> DeliveryRow:
    return DeliveryRow(subscription_id=delivery.subscription_id, event_id=delivery.event_id,
                       alert_id=delivery.alert_id, payload=delivery.payload)


def _envelope(bbox: Box) -> Any:
    west, south, east, north = bbox
    return and_(AlertRow.maxx >= west, AlertRow.minx <= east,  # type: ignore[arg-type]
                AlertRow.maxy >= south, AlertRow.miny <= north)  # type: ignore[arg-type]


def _filter(q: Any, city_id: str | None = None, statuses: Sequence[str] | None = None,
            boxes: Sequence[Box] | None = None, updated_after: datetime | None = None,
            updated_since: datetime | None = None, detected_from: date | None = None,
            detected_to: date | None = None) -> Any:
    if city_id:
        q = q.where(AlertRow.city_id == city_id)
    if statuses:
        q = q.where(AlertRow.status.in_(list(statuses)))  # type: ignore[attr-defined]
    if boxes:
        q = q.where(or_(*[_envelope(b) for b in boxes]))
    if updated_after:
        q = q.where(AlertRow.updated_at > as_utc(updated_after))
    if updated_since:
        q = q.where(AlertRow.updated_at >= as_utc(updated_since))
    if detected_from:
        q = q.where(AlertRow.first_detected >= detected_from)
    if detected_to:
        q = q.where(AlertRow.first_detected <= detected_to)
    return q


class SqlAlertRepository(SqlRepository):
    """Alerts and the ChangeEvents already folded into them."""

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        def op(s: Session) -> StoredAlert | None:
            row = s.get(AlertRow, alert_id)
            return _alert(row) if row is not None else None
        return self._run(op)

    def alerts_by_id(self, alert_ids: Sequence[str]) -> dict[str, StoredAlert]:
        """The alerts with these ids (primary-key lookups in one query); missing ids are
        simply absent."""
        wanted = list(dict.fromkeys(alert_ids))

        def op(s: Session) -> dict[str, StoredAlert]:
            out: dict[str, StoredAlert] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = s.exec(select(AlertRow).where(AlertRow.id.in_(chunk)))  # type: ignore[attr-defined]
                out.update({row.id: _alert(row) for row in rows})
            return out
        return self._run(op) if wanted else {}

    def save_alert(self, alert: StoredAlert) -> None:
        """Insert or replace one alert (tools and fixtures; the alerting step writes
        through :meth:`save_alert_changes`)."""
        self._run(lambda s: s.merge(_row(alert, _now())))

    def alerts(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               bbox: Box | None = None, updated_after: datetime | None = None,
               limit: int | None = 100, offset: int = 0, detected_from: date | None = None,
               detected_to: date | None = None, updated_since: datetime | None = None,
               order_by_updated: bool = False) -> list[StoredAlert]:
        """Alerts by filter; ``bbox`` filters by envelope (:meth:`find_alerts` is exact).

        ``updated_after`` is exclusive, ``updated_since`` inclusive; ``detected_from`` and
        ``detected_to`` bound ``first_detected`` (both inclusive). ``limit=None``: all.
        """
        def op(s: Session) -> list[StoredAlert]:
            q = _filter(select(AlertRow), city_id, statuses, [bbox] if bbox else None,
                        updated_after, updated_since, detected_from, detected_to)
            order = ((AlertRow.updated_at, AlertRow.id) if order_by_updated
                     else (AlertRow.first_detected, AlertRow.id))
            q = q.order_by(*order).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return [_alert(row) for row in s.exec(q)]
        return self._run(op)

    def count_alerts(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
                     bbox: Box | None = None, detected_from: date | None = None,
                     detected_to: date | None = None) -> int:
        def op(s: Session) -> int:
            q = _filter(select(func.count()).select_from(AlertRow), city_id, statuses,
                        [bbox] if bbox else None, detected_from=detected_from,
                        detected_to=detected_to)
            return int(s.exec(q).one())
        return self._run(op)

    def find_alerts(self, query: AlertQuery, *, limit: int, offset: int = 0) -> AlertPage:
        """A page of the matching alerts by (first detection, id), and how many match.

        Without boxes: COUNT and LIMIT/OFFSET in SQL. With boxes: the envelopes are
        filtered in SQL, the exact intersection tested on those rows, then paged."""
        filters: dict[str, Any] = {
            "city_id": query.city_id, "statuses": query.statuses,
            "detected_from": query.detected_from, "detected_to": query.detected_to}
        if not query.boxes:
            def page(s: Session) -> AlertPage:
                matched = int(s.exec(_filter(select(func.count()).select_from(AlertRow),
                                             **filters)).one())
                rows = s.exec(_filter(select(AlertRow), **filters)
                              .order_by(AlertRow.first_detected, AlertRow.id)
                              .offset(offset).limit(limit))
                return AlertPage([_alert(r) for r in rows], matched)
            return self._run(page)

        areas = [box(*b) for b in query.boxes]

        def refine(s: Session) -> AlertPage:
            # Only ids and geometries of the envelope hits are read and tested; the page's
            # rows are then loaded whole (a bbox with limit=10 parses 10 alerts, not all).
            q = _filter(select(AlertRow.id, AlertRow.geometry_json, AlertRow.minx,  # type: ignore[call-overload]
                               AlertRow.miny, AlertRow.maxx, AlertRow.maxy),
                        boxes=query.boxes, **filters)

            def hit(geometry: str, envelope: tuple[float, float, float, float]) -> bool:
                if any(b[0] <= envelope[0] and b[1] <= envelope[1] and envelope[2] <= b[2]
                       and envelope[3] <= b[3] for b in query.boxes or ()):
                    return True  # the whole envelope is inside a box: no need to parse
                return any(shape(json.loads(geometry)).intersects(area) for area in areas)

            hits = [row_id for row_id, geometry, *envelope in
                    s.exec(q.order_by(AlertRow.first_detected, AlertRow.id))
                    if hit(geometry, tuple(envelope))]
            page_ids = hits[offset:offset + limit]
            if not page_ids:
                return AlertPage([], len(hits))
            rows = {r.id: r for r in s.exec(select(AlertRow).where(
                col(AlertRow.id).in_(page_ids)))}
            return AlertPage([_alert(rows[i]) for i in page_ids if i in rows], len(hits))
        return self._run(refine)

    def change_folded(self, event_id: str) -> bool:
        """Whether the ChangeEvent ``event_id`` was already folded into the alerts."""
        return self._run(lambda s: s.get(FoldedChangeRow, event_id) is not None)

    def alert_revision(self, alert_id: str, revision: int) -> AlertRevision | None:
        """One revision of an alert as it was made (None: unknown, or made before
        revisions were kept)."""
        def op(s: Session) -> AlertRevision | None:
            row = s.get(AlertRevisionRow, (alert_id, revision))
            return _revision(row) if row is not None else None
        return self._run(op)

    def save_alert_changes(self, alerts: Sequence[StoredAlert], deliveries: Sequence[Delivery],
                           folded: tuple[str, str] | None = None,
                           moved_by: Sequence[str] = ()) -> int:
        """Write alert revisions and their outbox rows in ONE transaction (the outbox
        pattern: an alert revision is never saved without its notifications, nor the
        reverse). Rows already queued (same subscription and event) are skipped; returns
        the number of rows queued. ``folded`` = (ChangeEvent id, city id) is recorded in
        the same transaction (see :meth:`change_folded`). Each revision is also kept in
        ``alert_revision`` with ``moved_by``, the scene ids of the ChangeEvent that made
        it."""
        def op(s: Session) -> int:
            stamp = _now()
            if folded is not None and s.get(FoldedChangeRow, folded[0]) is None:
                s.add(FoldedChangeRow(event_id=folded[0], city_id=folded[1]))
            # set-based writes (a few statements per event, not two round trips per row):
            # the alerts upserted (created_at kept), revisions and outbox rows inserted
            # unless already there
            insert_rows(s, AlertRow, [_row_values(a, stamp) for a in alerts], keys=("id",),
                        update=True, keep=("created_at",))
            moved = json.dumps(list(moved_by))
            insert_rows(s, AlertRevisionRow, [
                {"alert_id": a.id, "revision": a.revision, "city_id": a.city_id,
                 "alert_json": _alert_json(a), "moved_by_json": moved, "recorded_at": stamp}
                for a in alerts], keys=("alert_id", "revision"))
            queued = insert_rows(s, DeliveryRow, [_delivery_values(d, stamp) for d in deliveries],
                                 keys=("subscription_id", "event_id"), count=True)
            return queued
        return self._run(op)
