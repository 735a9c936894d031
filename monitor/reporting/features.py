"""Alerts as GeoJSON features (OGC API - Features items), shared by the API and the demo
report so that both show the same properties."""

from __future__ import annotations

from typing import Any

from monitor.domain.records import StoredAlert
from monitor.domain.vocabulary import iso_utc

GEOJSON = "application/geo+json"


def alert_feature(record: StoredAlert, base_url: str) -> dict[str, Any]:
    """The feature of one alert; ``base_url`` prefixes its self link."""
    return {
        "type": "Feature",
        "id": record.id,
        "geometry": record.geometry,
        "properties": {
            "city_id": record.city_id,
            "status": record.status,
            "revision": record.revision,
            "area_m2": record.area_m2,
            "first_detected": record.first_detected.isoformat(),
            "confirmed": record.confirmed.isoformat() if record.confirmed else None,
            "retracted": record.retracted.isoformat() if record.retracted else None,
            "change_date": record.change_date.isoformat() if record.change_date else None,
            "confidence": record.confidence,
            "model_version": record.model_version,
            "scene_ids": list(record.scene_ids),  # an array (OGC API - Features, GeoJSON)
            "updated": iso_utc(record.updated_at) if record.updated_at else None,
        },
        "links": [{"href": f"{base_url}/collections/alerts/items/{record.id}",
                   "rel": "self", "type": GEOJSON},
                  # the evidence an analyst verifies it with (the dashboard's routes):
                  # before/after chips and the observation timeline
                  *evidence_links(record, base_url)],
    }


def evidence_links(record: StoredAlert, base_url: str) -> list[dict[str, str]]:
    """Links to an alert's before/after RGB chips and its evidence (observation timeline),
    served by the API's dashboard router."""
    root = f"{base_url}/cities/{record.city_id}/alerts/{record.id}"
    return [
        {"href": f"{root}/chips/before.png", "rel": "preview", "type": "image/png",
         "title": "before: the reference view of the site (RGB chip)"},
        {"href": f"{root}/chips/after.png", "rel": "preview", "type": "image/png",
         "title": "after: the observation that moved the alert (RGB chip)"},
        {"href": f"{root}/evidence", "rel": "describedby", "type": "application/json",
         "title": "evidence: the site's observation timeline"},
    ]
