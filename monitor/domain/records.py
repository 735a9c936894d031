"""What the repositories hold, as plain domain values (the ports return these).

The SQL adapter (``monitor.adapters.sql``) maps its rows to and from these types: JSON
columns are parsed there, timestamps come back as aware UTC datetimes, and no ORM row
leaves the adapter. Pure standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

SCENE_STATUSES = ("discovered", "published", "processing", "processed", "skipped",
                  "dead_lettered")
DELIVERY_STATUSES = ("pending", "delivered", "failed", "cancelled")
Box = tuple[float, float, float, float]  # west, south, east, north (degrees)


# -- the scene registry ---------------------------------------------------------------
@dataclass(frozen=True)
class RegisteredScene:
    """One scene in the registry and where it stands (``status`` in SCENE_STATUSES).

    ``event_json`` is the SceneEvent as published (the bytes a re-publication sends)."""

    id: str
    city_id: str
    source: str
    provider: str
    collection: str
    item_id: str
    modality: str
    acquired: datetime
    status: str
    reason: str | None
    event_json: str
    discovered_at: datetime
    published_at: datetime | None = None
    processing_at: datetime | None = None
    processed_at: datetime | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Watermark:
    """Per (city, source): the newest acquisition seen, and when we last polled."""

    city_id: str
    source: str
    last_acquired: datetime | None = None
    last_polled_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class SkippedItem:
    """A STAC item that could not become a scene, with the reason."""

    city_id: str
    collection: str
    item_id: str
    reason: str
    seen_at: datetime


@dataclass(frozen=True)
class RegisteredCity:
    id: str
    name: str
    country: str
    aoi: dict[str, Any]  # GeoJSON geometry, lon/lat
    grid: dict[str, Any]  # monitor.domain.grid.CityGrid.to_dict()
    population: dict[int, float] = field(default_factory=dict)
    updated_at: datetime | None = None


# -- alerts -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredAlert:
    """An alert's latest revision as stored (``geometry`` GeoJSON, lon/lat).

    ``created_at`` and ``updated_at`` are set by the repository when it writes the row
    (None on a revision not yet saved)."""

    id: str
    city_id: str
    status: str
    geometry: dict[str, Any]
    area_m2: float
    first_detected: date
    confidence: float
    model_version: str
    revision: int = 1
    scene_ids: tuple[str, ...] = ()
    confirmed: date | None = None
    retracted: date | None = None
    change_date: date | None = None
    site_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scene_ids", tuple(self.scene_ids))


@dataclass(frozen=True)
class AlertRevision:
    """One revision of an alert as it was made, and the scene(s) whose ChangeEvent made it
    (``moved_by``: STAC item ids; empty for a revision written by a tool)."""

    alert: StoredAlert
    moved_by: tuple[str, ...] = ()
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class AlertQuery:
    """The filters of an alert search. ``boxes``: the alert's geometry must intersect one
    of them (exactly, not just its envelope); ``detected_*`` bound ``first_detected``."""

    city_id: str | None = None
    statuses: tuple[str, ...] = ()
    boxes: tuple[Box, ...] | None = None
    detected_from: date | None = None
    detected_to: date | None = None


@dataclass(frozen=True)
class AlertPage:
    alerts: list[StoredAlert]
    matched: int  # how many match the query in all (numberMatched)


# -- subscriptions and the outbox -------------------------------------------------------
@dataclass(frozen=True)
class Subscription:
    """A webhook subscription. Empty ``cities``/``statuses`` mean every city/status."""

    id: str
    name: str
    url: str
    secret: str
    cities: Sequence[str] = ()
    statuses: Sequence[str] = ()
    min_confidence: float = 0.0
    active: bool = True
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cities", tuple(self.cities))
        object.__setattr__(self, "statuses", tuple(self.statuses))


@dataclass(frozen=True)
class Delivery:
    """One outbox row: an AlertEvent (``payload``, its CloudEvent JSON) for one webhook
    subscription, or for a bus topic (``subscription_id`` = ``"bus:<topic>"``).

    ``city_id`` is the event's subject (the bus key); ``id`` and the timestamps are set by
    the repository."""

    subscription_id: str
    event_id: str
    alert_id: str
    payload: str
    city_id: str = "unknown"
    id: int | None = None
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
