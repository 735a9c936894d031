"""The alerting step: ChangeEvent -> alert revisions -> database + outbox -> AlertEvents.

For each ChangeEvent (topic ``urban.changes.v1``, group ``alerting``):
1. load the city's alerts, fold the event's regions into them (``monitor.domain.alerts``);
2. save every changed alert with its outbox rows (webhooks + the alerts topic) in one
   transaction;
3. publish the pending bus rows (AlertEvents to ``urban.alerts.v1``, key = city id).

Redelivery is harmless: the ids of folded ChangeEvents are saved with the revisions they
made (table ``folded_change``), so an event delivered again is not folded again, and an
outbox row left unpublished by a crash between steps 2 and 3 is published on the next
event (or at start). AlertEvent ids are ``hash(alert id, revision)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from shapely.geometry import shape

from monitor.domain.alerts import Alert, AlertRules, track_alerts
from monitor.domain.events import AlertData, ChangeData, CloudEvent, alert_event
from monitor.domain.records import StoredAlert
from monitor.pipeline.outbox import plan_deliveries, publish_pending
from monitor.ports import AlertingStore, Bus, Message
from monitor.settings import AlertingSettings

log = logging.getLogger(__name__)


def rules_from(settings: AlertingSettings) -> AlertRules:
    return AlertRules(min_mapping_unit_m2=settings.min_mapping_unit_m2,
                      match_distance_m=settings.match_distance_m,
                      confidence_step=settings.confidence_step)


def record_to_alert(record: StoredAlert) -> Alert:
    return Alert(
        alert_id=record.id, city_id=record.city_id, status=record.status,
        revision=record.revision, geometry=shape(record.geometry),
        area_m2=record.area_m2, first_detected=record.first_detected,
        confirmed=record.confirmed, retracted=record.retracted,
        change_date=record.change_date, confidence=record.confidence,
        model_version=record.model_version, scene_ids=record.scene_ids,
    )


def alert_to_record(alert: Alert, previous: StoredAlert | None = None) -> StoredAlert:
    return StoredAlert(
        id=alert.alert_id, city_id=alert.city_id, status=alert.status,
        revision=alert.revision, geometry=alert.geometry_geojson(),
        area_m2=round(alert.area_m2, 2), first_detected=alert.first_detected,
        confirmed=alert.confirmed, retracted=alert.retracted, change_date=alert.change_date,
        confidence=alert.confidence, model_version=alert.model_version,
        scene_ids=alert.scene_ids,
        created_at=previous.created_at if previous is not None else None,
    )


def record_to_data(record: StoredAlert) -> AlertData:
    return AlertData(
        alert_id=record.id, city_id=record.city_id, status=record.status,  # type: ignore[arg-type]
        revision=record.revision, geometry=record.geometry,
        area_m2=record.area_m2, first_detected=record.first_detected,
        confirmed=record.confirmed, retracted=record.retracted,
        change_date=record.change_date, confidence=record.confidence,
        model_version=record.model_version, scene_ids=list(record.scene_ids),
    )


def record_to_event(record: StoredAlert, time: datetime | None = None) -> CloudEvent:
    event = alert_event(record_to_data(record))
    if time is not None:
        event = event.model_copy(update={"time": time})
    return event


def apply_change_event(db: AlertingStore, change: ChangeData, *, rules: AlertRules,
                       alerts_topic: str | None, event_id: str | None = None) -> list[CloudEvent]:
    """Fold one ChangeEvent into the city's alerts; save revisions and their outbox rows.
    Returns the AlertEvents of the new revisions (empty when nothing changed).

    With ``event_id``, an event already folded is ignored: its regions are an older
    snapshot of the state, and folding them again over newer alerts (a redelivery after a
    crash, a duplicate) would make revisions that a single delivery does not."""
    if event_id is not None and db.change_folded(event_id):
        log.info("change event %s of city %s was already folded: ignored", event_id,
                 change.city_id)
        return []
    folded = (event_id, change.city_id) if event_id is not None else None
    records = {r.id: r for r in db.alerts(city_id=change.city_id, limit=None)}
    result = track_alerts([record_to_alert(r) for r in records.values()], change.regions,
                          city_id=change.city_id, model_version=change.model_version,
                          scene_ids=change.scene_ids, observed=change.acquired.date(),
                          rules=rules)
    if not result.changed:
        if folded is not None:
            db.save_alert_changes([], [], folded=folded)
        return []
    subscriptions = db.subscriptions(active_only=True)
    new_records: list[StoredAlert] = []
    events: list[CloudEvent] = []
    deliveries = []
    for alert in result.changed:
        record = alert_to_record(alert, records.get(alert.alert_id))
        event = record_to_event(record)
        new_records.append(record)
        events.append(event)
        deliveries.extend(plan_deliveries(event, subscriptions, alerts_topic))
        log.info("alert %s of city %s: revision %d, %s (%s)", alert.alert_id, alert.city_id,
                 alert.revision, alert.status, result.reasons.get(alert.alert_id, ""))
    db.save_alert_changes(new_records, deliveries, folded=folded)
    return events


class AlertingHandler:
    """The EventLoop handler of the alerting service."""

    def __init__(self, db: AlertingStore, bus: Bus, *, settings: AlertingSettings,
                 alerts_topic: str) -> None:
        self.db = db
        self.bus = bus
        self.rules = rules_from(settings)
        self.alerts_topic = alerts_topic
        self.published = 0
        self._unmarked: set[int] = set()  # outbox rows on the bus, not yet marked delivered

    def __call__(self, event: CloudEvent, message: Message | None = None) -> None:
        change = event.data
        assert isinstance(change, ChangeData)  # EventLoop checked the type
        apply_change_event(self.db, change, rules=self.rules, alerts_topic=self.alerts_topic,
                           event_id=event.id)
        self.published += publish_pending(self.db, self.bus, now=datetime.now(UTC),
                                          unmarked=self._unmarked)

    def handle_all(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            self(event)
