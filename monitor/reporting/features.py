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
                   "rel": "self", "type": GEOJSON}],
    }
