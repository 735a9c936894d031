"""The tables (SQLModel rows). Private to ``monitor.adapters.sql``: the repositories map
them to the domain values of ``monitor.domain.records``, so no row leaves the adapter.

Schema evolution: versioned create-all. The ``schema_version`` table holds one number.
An empty database gets ``create_all`` and the current version; an older one is brought
forward by the numbered steps in ``MIGRATIONS`` (plain SQL that runs on both SQLite and
PostgreSQL); a newer one is refused with a clear message. Why not Alembic: the schema is
small, both backends must stay identical, and every step is tested on both; a numbered
list of idempotent steps keeps that obvious and dependency-free.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Column, Index, UniqueConstraint
from sqlalchemy import Text as SAText
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 4


def _now() -> datetime:
    return datetime.now(UTC)


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int
    updated_at: datetime = Field(default_factory=_now)


class CityRow(SQLModel, table=True):
    __tablename__ = "city"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    country: str = ""
    aoi_geojson: str = Field(sa_column=Column(SAText, nullable=False))
    grid_json: str = Field(sa_column=Column(SAText, nullable=False))
    population_json: str = Field(default="{}", sa_column=Column(SAText, nullable=False))
    updated_at: datetime = Field(default_factory=_now)


class SceneRow(SQLModel, table=True):
    """The scene registry: the durable record of every scene and where it stands."""

    __tablename__ = "scene"
    __table_args__ = (
        UniqueConstraint("city_id", "collection", "item_id", name="uq_scene_city_item"),
        Index("ix_scene_city_status", "city_id", "status"),
    )
    id: str = Field(primary_key=True, max_length=64, description="the SceneEvent id")
    city_id: str = Field(index=True, max_length=64)
    source: str
    provider: str
    collection: str
    item_id: str
    modality: str
    acquired: datetime = Field(index=True)
    status: str = Field(default="discovered", max_length=20)
    reason: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))
    event_json: str = Field(sa_column=Column(SAText, nullable=False))
    discovered_at: datetime = Field(default_factory=_now)
    published_at: datetime | None = None
    processing_at: datetime | None = None
    processed_at: datetime | None = None
    attempts: int = 0


class WatermarkRow(SQLModel, table=True):
    """Per (city, source): the newest acquisition seen, and when we last polled."""

    __tablename__ = "watermark"
    city_id: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=128)
    last_acquired: datetime | None = None
    last_polled_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))


class SkippedItemRow(SQLModel, table=True):
    """STAC items that could not become scenes, with the reason (never silently dropped)."""

    __tablename__ = "skipped_item"
    city_id: str = Field(primary_key=True, max_length=64)
    collection: str = Field(primary_key=True)
    item_id: str = Field(primary_key=True)
    reason: str = Field(sa_column=Column(SAText, nullable=False))
    seen_at: datetime = Field(default_factory=_now)


class AlertRow(SQLModel, table=True):
    __tablename__ = "alert"
    id: str = Field(primary_key=True, max_length=64)
    city_id: str = Field(index=True, max_length=64)
    status: str = Field(index=True, max_length=20)
    revision: int = 1
    geometry_json: str = Field(sa_column=Column(SAText, nullable=False))
    minx: float
    miny: float
    maxx: float
    maxy: float
    area_m2: float
    first_detected: date
    confirmed: date | None = None
    retracted: date | None = None
    change_date: date | None = None
    confidence: float
    model_version: str
    scene_ids_json: str = Field(default="[]", sa_column=Column(SAText, nullable=False))
    site_id: str | None = Field(default=None, max_length=32)  # the state's site (v3)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now, index=True)


class AlertRevisionRow(SQLModel, table=True):
    """Every revision of every alert as it was made (the alert row keeps only the latest):
    what the evidence chips of an older revision are drawn from, and which scenes moved
    the alert to it."""

    __tablename__ = "alert_revision"
    alert_id: str = Field(primary_key=True, max_length=64)
    revision: int = Field(primary_key=True)
    city_id: str = Field(max_length=64)
    alert_json: str = Field(sa_column=Column(SAText, nullable=False))
    moved_by_json: str = Field(default="[]", sa_column=Column(SAText, nullable=False))
    recorded_at: datetime = Field(default_factory=_now)


class FoldedChangeRow(SQLModel, table=True):
    """ChangeEvents already folded into the alerts: a redelivered one is not folded again
    (its regions are an older snapshot of the state; folding them over newer alerts would
    make spurious revisions)."""

    __tablename__ = "folded_change"
    event_id: str = Field(primary_key=True, max_length=64)
    city_id: str = Field(max_length=64)
    folded_at: datetime = Field(default_factory=_now)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscription"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    url: str
    secret: str
    cities_json: str = Field(default="[]", sa_column=Column(SAText, nullable=False))
    statuses_json: str = Field(default="[]", sa_column=Column(SAText, nullable=False))
    min_confidence: float = 0.0
    active: bool = True
    created_at: datetime = Field(default_factory=_now)


class DeliveryRow(SQLModel, table=True):
    """The outbox: one row per (subscription, alert event); retried until delivered."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_delivery_sub_event"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: str = Field(max_length=64)
    event_id: str = Field(max_length=64)
    alert_id: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(SAText, nullable=False))
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=_now)
    last_error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))
    last_status_code: int | None = None
    created_at: datetime = Field(default_factory=_now)
    delivered_at: datetime | None = None


# Numbered steps from version N-1 to N. Each is a list of SQL statements.
MIGRATIONS: dict[int, list[str]] = {
    2: ["CREATE TABLE IF NOT EXISTS folded_change (event_id VARCHAR(64) NOT NULL PRIMARY KEY, "
        "city_id VARCHAR(64) NOT NULL, folded_at TIMESTAMP NOT NULL)"],
    # alerts are the state's sites (ChangeEvent v2): the site each alert is
    3: ["ALTER TABLE alert ADD COLUMN site_id VARCHAR(32)"],
    # every revision kept (evidence chips per revision); older revisions are not known
    4: ["CREATE TABLE IF NOT EXISTS alert_revision (alert_id VARCHAR(64) NOT NULL, "
        "revision INTEGER NOT NULL, city_id VARCHAR(64) NOT NULL, alert_json TEXT NOT NULL, "
        "moved_by_json TEXT NOT NULL, recorded_at TIMESTAMP NOT NULL, "
        "PRIMARY KEY (alert_id, revision))"],
}
