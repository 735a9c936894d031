"""The alerting step: ChangeEvent v2 -> alert revisions -> database + outbox -> AlertEvents.

For each ChangeEvent (topic ``urban.changes.v2``, group ``alerting``):
1. load the alerts of the sites the event reports, by id (one indexed query: never the
   city's whole set), and fold each site report into its alert (``monitor.domain.alerts``);
2. save every changed alert with its outbox rows (webhooks + the alerts topic) in one
   transaction;
3. publish the pending bus rows (AlertEvents to ``urban.alerts.v1``, key = city id).

Its cost is what the scene changed (the sites it moved), not what the city accumulated.

Redelivery is harmless: the ids of folded ChangeEvents are saved with the revisions they
made (table ``folded_change``), so an event delivered again is not folded again, and an
outbox row left unpublished by a crash between steps 2 and 3 is published on the next
event (or at start). AlertEvent ids are ``hash(alert id, revision)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from shapely.geometry import shape

from monitor.domain.alerts import Alert, AlertRules, alert_id_for, fold_site
from monitor.domain.events import AlertData, AlertLink, ChangeData, CloudEvent, alert_event
from monitor.domain.records import StoredAlert
from monitor.pipeline.outbox import plan_deliveries, publish_pending
from monitor.ports import AlertingStore, Bus, Message
from monitor.settings import AlertingSettings

log = logging.getLogger(__name__)


def rules_from(settings: AlertingSettings) -> AlertRules:
    return AlertRules(min_mapping_unit_m2=settings.min_mapping_unit_m2,
                      confidence_step=settings.confidence_step)


def record_to_alert(record: StoredAlert) -> Alert:
    return Alert(
        alert_id=record.id, city_id=record.city_id, status=record.status,
        revision=record.revision, geometry=shape(record.geometry),
        area_m2=record.area_m2, first_detected=record.first_detected,
        confirmed=record.confirmed, retracted=record.retracted,
        change_date=record.change_date, confidence=record.confidence,
        model_version=record.model_version, scene_ids=record.scene_ids, site_id=record.site_id,
    )


def alert_to_record(alert: Alert, previous: StoredAlert | None = None) -> StoredAlert:
    return StoredAlert(
        id=alert.alert_id, city_id=alert.city_id, status=alert.status,
        revision=alert.revision, geometry=alert.geometry_geojson(),
        area_m2=round(alert.area_m2, 2), first_detected=alert.first_detected,
        confirmed=alert.confirmed, retracted=alert.retracted, change_date=alert.change_date,
        confidence=alert.confidence, model_version=alert.model_version,
        scene_ids=alert.scene_ids, site_id=alert.site_id,
        created_at=previous.created_at if previous is not None else None,
    )


def alert_links(record: StoredAlert, base: str) -> list[AlertLink]:
    """Links of one revision on the API at ``base``: the OGC feature, the evidence of
    this revision and its before/after chips."""
    b = base.rstrip("/")
    here = f"{b}/cities/{quote(record.city_id, safe='')}/alerts/{quote(record.id, safe='')}"
    rev = f"revision={record.revision}"
    return [
        AlertLink(href=f"{b}/collections/alerts/items/{quote(record.id, safe='')}",
                  rel="alternate", type="application/geo+json", title="the alert (OGC API)"),
        AlertLink(href=f"{here}/evidence?{rev}", rel="evidence", type="application/json",
                  title="before/after chips and the site's observation timeline"),
        AlertLink(href=f"{here}/chips/before.png?{rev}", rel="preview", type="image/png",
                  title="before: the last clear Sentinel-2 scene before the change"),
        AlertLink(href=f"{here}/chips/after.png?{rev}", rel="preview", type="image/png",
                  title="after: the clear Sentinel-2 scene that moved the alert (or the "
                        "nearest before it)"),
    ]


def record_to_data(record: StoredAlert, links_base: str | None = None) -> AlertData:
    return AlertData(
        alert_id=record.id, city_id=record.city_id, status=record.status,  # type: ignore[arg-type]
        revision=record.revision, geometry=record.geometry,
        area_m2=record.area_m2, first_detected=record.first_detected,
        confirmed=record.confirmed, retracted=record.retracted,
        change_date=record.change_date, confidence=record.confidence,
        model_version=record.model_version, scene_ids=list(record.scene_ids),
        site_id=record.site_id,
        links=alert_links(record, links_base) if links_base else [],
    )


def record_to_event(record: StoredAlert, time: datetime | None = None,
                    links_base: str | None = None) -> CloudEvent:
    event = alert_event(record_to_data(record, links_base))
    if time is not None:
        event = event.model_copy(update={"time": time})
    return event


def apply_change_event(db: AlertingStore, change: ChangeData, *, rules: AlertRules,
                       alerts_topic: str | None, event_id: str | None = None,
                       links_base: str | None = None) -> list[CloudEvent]:
    """Fold one ChangeEvent into the city's alerts; save revisions and their outbox rows.
    Returns the AlertEvents of the new revisions (empty when nothing changed).

    With ``event_id``, an event already folded is ignored: a redelivery after a crash, or a
    duplicate, would otherwise fold the same site reports twice."""
    if event_id is not None and db.change_folded(event_id):
        log.info("change event %s of city %s was already folded: ignored", event_id,
                 change.city_id)
        return []
    folded = (event_id, change.city_id) if event_id is not None else None
    ids = {site.site_id: alert_id_for(change.city_id, site.site_id) for site in change.sites}
    records = db.alerts_by_id(sorted(set(ids.values()))) if ids else {}
    changed: list[tuple[Alert, StoredAlert | None]] = []
    for site in change.sites:
        previous = records.get(ids[site.site_id])
        alert = fold_site(record_to_alert(previous) if previous is not None else None, site,
                          city_id=change.city_id, model_version=change.model_version,
                          scene_ids=change.scene_ids, rules=rules)
        if alert is not None:
            changed.append((alert, previous))
    if not changed:
        if folded is not None:
            db.save_alert_changes([], [], folded=folded)
        return []
    subscriptions = db.subscriptions(active_only=True)
    new_records: list[StoredAlert] = []
    events: list[CloudEvent] = []
    deliveries = []
    for alert, previous in changed:
        record = alert_to_record(alert, previous)
        event = record_to_event(record, links_base=links_base)
        new_records.append(record)
        events.append(event)
        deliveries.extend(plan_deliveries(event, subscriptions, alerts_topic))
        log.debug("alert %s of city %s (site %s): revision %d, %s", alert.alert_id,
                  alert.city_id, alert.site_id, alert.revision, alert.status)
    db.save_alert_changes(new_records, deliveries, folded=folded, moved_by=change.scene_ids)
    return events


class AlertingHandler:
    """The EventLoop handler of the alerting service."""

    def __init__(self, db: AlertingStore, bus: Bus, *, settings: AlertingSettings,
                 alerts_topic: str, links_base: str | None = None) -> None:
        self.db = db
        self.links_base = links_base
        self.bus = bus
        self.rules = rules_from(settings)
        self.alerts_topic = alerts_topic
        self.published = 0
        self._unmarked: set[int] = set()  # outbox rows on the bus, not yet marked delivered

    def __call__(self, event: CloudEvent, message: Message | None = None) -> None:
        change = event.data
        assert isinstance(change, ChangeData)  # EventLoop checked the type
        apply_change_event(self.db, change, rules=self.rules, alerts_topic=self.alerts_topic,
                           event_id=event.id, links_base=self.links_base)
        self.published += publish_pending(self.db, self.bus, now=datetime.now(UTC),
                                          unmarked=self._unmarked)

    def handle_all(self, events: Sequence[CloudEvent]) -> None:
        for event in events:
            self(event)
