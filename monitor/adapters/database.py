"""The database (sqlmodel): cities, the scene registry, watermarks, alerts, subscriptions,
deliveries (the webhook outbox). SQLite file by default, PostgreSQL by URL.

Schema evolution: versioned create-all. The ``schema_version`` table holds one number.
An empty database gets ``create_all`` and the current version; an older one is brought
forward by the numbered steps in ``MIGRATIONS`` (plain SQL that runs on both SQLite and
PostgreSQL); a newer one is refused with a clear message. Why not Alembic: the schema is
small, both backends must stay identical, and every step is tested on both; a numbered
list of idempotent steps keeps that obvious and dependency-free.

SQL is only ever built by SQLAlchemy with bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Column, Index, UniqueConstraint, event
from sqlalchemy import Text as SAText
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, create_engine, func, select

from monitor.errors import DatabaseError

SCHEMA_VERSION = 2
T = TypeVar("T")

SCENE_STATUSES = ("discovered", "published", "processing", "processed", "skipped",
                  "dead_lettered")


def _now() -> datetime:
    return datetime.now(UTC)


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int
    updated_at: datetime = Field(default_factory=_now)


class CityRecord(SQLModel, table=True):
    __tablename__ = "city"
    id: str = Field(primary_key=True, max_length=64)
    name: str
    country: str = ""
    aoi_geojson: str = Field(sa_column=Column(SAText, nullable=False))
    grid_json: str = Field(sa_column=Column(SAText, nullable=False))
    population_json: str = Field(default="{}", sa_column=Column(SAText, nullable=False))
    updated_at: datetime = Field(default_factory=_now)


class SceneRecord(SQLModel, table=True):
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


class Watermark(SQLModel, table=True):
    """Per (city, source): the newest acquisition seen, and when we last polled."""

    __tablename__ = "watermark"
    city_id: str = Field(primary_key=True, max_length=64)
    source: str = Field(primary_key=True, max_length=128)
    last_acquired: datetime | None = None
    last_polled_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(SAText, nullable=True))


class SkippedItem(SQLModel, table=True):
    """STAC items that could not become scenes, with the reason (never silently dropped)."""

    __tablename__ = "skipped_item"
    city_id: str = Field(primary_key=True, max_length=64)
    collection: str = Field(primary_key=True)
    item_id: str = Field(primary_key=True)
    reason: str = Field(sa_column=Column(SAText, nullable=False))
    seen_at: datetime = Field(default_factory=_now)


class AlertRecord(SQLModel, table=True):
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
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now, index=True)


class FoldedChange(SQLModel, table=True):
    """ChangeEvents already folded into the alerts: a redelivered one is not folded again
    (its regions are an older snapshot of the state; folding them over newer alerts would
    make spurious revisions)."""

    __tablename__ = "folded_change"
    event_id: str = Field(primary_key=True, max_length=64)
    city_id: str = Field(max_length=64)
    folded_at: datetime = Field(default_factory=_now)


class Subscription(SQLModel, table=True):
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


class Delivery(SQLModel, table=True):
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
}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


class Database:
    """Repository over the tables above. Every method is one short transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.safe_url = _redact(url)
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, echo=echo,
                                                connect_args={"check_same_thread": False,
                                                              "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5,
                                        max_overflow=5)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    # -- plumbing ----------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
                session.commit()
        except IntegrityError:
            raise
        except OperationalError as exc:
            raise DatabaseError(
                f"database {self.safe_url} is unavailable: {str(exc.orig).strip()[:200]}",
                "check that the database server runs and the URL is right; work is retried",
            ) from exc
        except SQLAlchemyError as exc:
            raise DatabaseError(f"database {self.safe_url} refused an operation: {exc}"[:400],
                                "see the log for the statement") from exc

    def _run(self, fn: Callable[[Session], T]) -> T:
        with self.session() as s:
            return fn(s)

    def init_schema(self) -> int:
        """Create or bring the schema forward; returns the version now in place."""
        try:
            SQLModel.metadata.create_all(self.engine, tables=[SchemaVersion.__table__])  # type: ignore[list-item]
        except OperationalError as exc:
            raise DatabaseError(f"database {self.safe_url} is unavailable: {exc.orig}",
                                "start it (bash docker/postgres.sh start) or fix the URL") from exc
        with self.session() as s:
            row = s.get(SchemaVersion, 1)
            current = row.version if row else 0
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {self.safe_url} has schema version {current}, newer than this "
                f"program's {SCHEMA_VERSION}", "upgrade urban-monitor before using this database")
        if current == 0:
            SQLModel.metadata.create_all(self.engine)
        else:
            from sqlalchemy import text

            for version in range(current + 1, SCHEMA_VERSION + 1):
                with self.session() as s:
                    for statement in MIGRATIONS.get(version, []):
                        s.exec(text(statement))  # type: ignore[call-overload]
        with self.session() as s:
            row = s.get(SchemaVersion, 1) or SchemaVersion(id=1, version=SCHEMA_VERSION)
            row.version = SCHEMA_VERSION
            row.updated_at = _now()
            s.add(row)
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        with self.session() as s:
            row = s.get(SchemaVersion, 1)
            return row.version if row else 0

    def dispose(self) -> None:
        self.engine.dispose()

    # -- cities ------------------------------------------------------------------------
    def upsert_city(self, city_id: str, name: str, aoi_geojson: dict[str, Any],
                    grid: dict[str, Any], country: str = "",
                    population: dict[int, float] | None = None) -> None:
        def op(s: Session) -> None:
            row = s.get(CityRecord, city_id) or CityRecord(id=city_id, name=name, aoi_geojson="",
                                                           grid_json="")
            row.name, row.country = name, country
            row.aoi_geojson = json.dumps(aoi_geojson)
            row.grid_json = json.dumps(grid)
            row.population_json = json.dumps({str(k): v for k, v in (population or {}).items()})
            row.updated_at = _now()
            s.add(row)
        self._run(op)

    def cities(self) -> list[CityRecord]:
        return self._run(lambda s: list(s.exec(select(CityRecord).order_by(CityRecord.id))))

    def city(self, city_id: str) -> CityRecord | None:
        return self._run(lambda s: s.get(CityRecord, city_id))

    # -- scene registry ----------------------------------------------------------------
    def register_scene(self, scene_id: str, *, city_id: str, source: str, provider: str,
                       collection: str, item_id: str, modality: str, acquired: datetime,
                       event_json: str) -> bool:
        """Record a discovered scene. False if (city, collection, item) is already known."""
        def op(s: Session) -> bool:
            exists = s.exec(select(SceneRecord.id).where(
                SceneRecord.city_id == city_id, SceneRecord.collection == collection,
                SceneRecord.item_id == item_id)).first()
            if exists is not None:
                return False
            s.add(SceneRecord(id=scene_id, city_id=city_id, source=source, provider=provider,
                              collection=collection, item_id=item_id, modality=modality,
                              acquired=_utc(acquired), event_json=event_json))
            return True
        try:
            return self._run(op)
        except IntegrityError:
            return False  # registered concurrently by another scheduler: same outcome

    def known_item_ids(self, city_id: str, collection: str, item_ids: Sequence[str]) -> set[str]:
        if not item_ids:
            return set()
        return self._run(lambda s: set(s.exec(select(SceneRecord.item_id).where(
            SceneRecord.city_id == city_id, SceneRecord.collection == collection,
            SceneRecord.item_id.in_(list(item_ids))))))  # type: ignore[attr-defined]

    def mark_scene(self, scene_id: str, status: str, reason: str | None = None) -> None:
        if status not in SCENE_STATUSES:
            raise ValueError(f"unknown scene status {status!r}")

        def op(s: Session) -> None:
            row = s.get(SceneRecord, scene_id)
            if row is None:
                raise DatabaseError(f"scene {scene_id} is not in the scene registry",
                                    "register it before changing its status")
            stamp = _now()
            if status == "published" and row.status != "discovered":
                # The bus acknowledged after a worker had already taken the scene further
                # (processing, processed, ...): keep its status, only record the time.
                row.published_at = stamp
                s.add(row)
                return
            row.status = status
            row.reason = reason
            if status == "published":
                row.published_at = stamp
            elif status == "processing":
                row.processing_at = stamp
                row.attempts += 1
            elif status in ("processed", "skipped", "dead_lettered"):
                row.processed_at = stamp
            s.add(row)
        self._run(op)

    def scene(self, scene_id: str) -> SceneRecord | None:
        return self._run(lambda s: s.get(SceneRecord, scene_id))

    def scenes(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               limit: int | None = None) -> list[SceneRecord]:
        def op(s: Session) -> list[SceneRecord]:
            q = select(SceneRecord)
            if city_id:
                q = q.where(SceneRecord.city_id == city_id)
            if statuses:
                q = q.where(SceneRecord.status.in_(list(statuses)))  # type: ignore[attr-defined]
            q = q.order_by(SceneRecord.acquired, SceneRecord.id)  # type: ignore[arg-type]
            if limit:
                q = q.limit(limit)
            return list(s.exec(q))
        return self._run(op)

    def scene_counts(self, city_id: str | None = None) -> dict[str, int]:
        def op(s: Session) -> dict[str, int]:
            q = select(SceneRecord.status, func.count()).group_by(SceneRecord.status)
            if city_id:
                q = q.where(SceneRecord.city_id == city_id)
            return {status: int(n) for status, n in s.exec(q)}
        return self._run(op)

    # -- watermarks --------------------------------------------------------------------
    def watermark(self, city_id: str, source: str) -> Watermark | None:
        return self._run(lambda s: s.get(Watermark, (city_id, source)))

    def set_watermark(self, city_id: str, source: str, *, last_acquired: datetime | None,
                      polled_at: datetime, error: str | None = None) -> None:
        def op(s: Session) -> None:
            row = s.get(Watermark, (city_id, source)) or Watermark(city_id=city_id, source=source)
            if last_acquired is not None:
                new = _utc(last_acquired)
                row.last_acquired = max(row.last_acquired, new) if row.last_acquired else new
            row.last_polled_at = _utc(polled_at)
            row.last_error = error
            s.add(row)
        self._run(op)

    def record_skipped_item(self, city_id: str, collection: str, item_id: str, reason: str) -> bool:
        """True the first time an item is skipped (so the warning is logged once)."""
        def op(s: Session) -> bool:
            row = s.get(SkippedItem, (city_id, collection, item_id))
            if row is not None:
                row.reason, row.seen_at = reason, _now()
                s.add(row)
                return False
            s.add(SkippedItem(city_id=city_id, collection=collection, item_id=item_id,
                              reason=reason))
            return True
        return self._run(op)

    def skipped_items(self, city_id: str | None = None) -> list[SkippedItem]:
        def op(s: Session) -> list[SkippedItem]:
            q = select(SkippedItem)
            if city_id:
                q = q.where(SkippedItem.city_id == city_id)
            return list(s.exec(q))
        return self._run(op)

    # -- alerts ------------------------------------------------------------------------
    def get_alert(self, alert_id: str) -> AlertRecord | None:
        return self._run(lambda s: s.get(AlertRecord, alert_id))

    def save_alert(self, alert: AlertRecord) -> None:
        def op(s: Session) -> None:
            alert.updated_at = _now()
            s.merge(alert)
        self._run(op)

    def alerts(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               updated_after: datetime | None = None, limit: int | None = 100,
               offset: int = 0, detected_from: date | None = None,
               detected_to: date | None = None, updated_since: datetime | None = None,
               order_by_updated: bool = False) -> list[AlertRecord]:
        """Alerts by filter; ``bbox`` is an envelope pre-filter (refine geometry in the caller).

        ``updated_after`` is exclusive, ``updated_since`` inclusive; ``detected_from`` and
        ``detected_to`` bound ``first_detected`` (both inclusive). ``limit=None``: all.
        """
        def op(s: Session) -> list[AlertRecord]:
            q = _alert_filter(select(AlertRecord), city_id, statuses, bbox, updated_after,
                              updated_since, detected_from, detected_to)
            order = ((AlertRecord.updated_at, AlertRecord.id) if order_by_updated
                     else (AlertRecord.first_detected, AlertRecord.id))
            q = q.order_by(*order).offset(offset)
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q))
        return self._run(op)

    def count_alerts(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
                     bbox: tuple[float, float, float, float] | None = None,
                     detected_from: date | None = None, detected_to: date | None = None) -> int:
        def op(s: Session) -> int:
            q = _alert_filter(select(func.count()).select_from(AlertRecord), city_id, statuses,
                              bbox, None, None, detected_from, detected_to)
            return int(s.exec(q).one())
        return self._run(op)

    def change_folded(self, event_id: str) -> bool:
        """Whether the ChangeEvent ``event_id`` was already folded into the alerts."""
        return self._run(lambda s: s.get(FoldedChange, event_id) is not None)

    def save_alert_changes(self, alerts: Sequence[AlertRecord],
                           deliveries: Sequence[Delivery],
                           folded: tuple[str, str] | None = None) -> int:
        """Write alert revisions and their outbox rows in ONE transaction (the outbox
        pattern: an alert revision is never saved without its notifications, nor the
        reverse). Rows already queued (same subscription and event) are skipped; returns
        the number of rows queued. ``folded`` = (ChangeEvent id, city id) is recorded in
        the same transaction (see :meth:`change_folded`)."""
        def op(s: Session) -> int:
            stamp = _now()
            if folded is not None and s.get(FoldedChange, folded[0]) is None:
                s.add(FoldedChange(event_id=folded[0], city_id=folded[1]))
            for alert in alerts:
                alert.updated_at = stamp
                s.merge(alert)
            queued = 0
            for delivery in deliveries:
                exists = s.exec(select(Delivery.id).where(
                    Delivery.subscription_id == delivery.subscription_id,
                    Delivery.event_id == delivery.event_id)).first()
                if exists is None:
                    s.add(delivery)
                    queued += 1
            return queued
        return self._run(op)

    # -- subscriptions and the outbox ---------------------------------------------------
    def add_subscription(self, subscription: Subscription) -> Subscription:
        def op(s: Session) -> Subscription:
            s.add(subscription)
            return subscription
        return self._run(op)

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self._run(lambda s: s.get(Subscription, subscription_id))

    def subscriptions(self, *, active_only: bool = True) -> list[Subscription]:
        def op(s: Session) -> list[Subscription]:
            q = select(Subscription)
            if active_only:
                q = q.where(Subscription.active == True)  # noqa: E712 (SQL, not Python)
            return list(s.exec(q.order_by(Subscription.created_at, Subscription.id)))  # type: ignore[arg-type]
        return self._run(op)

    def deactivate_subscription(self, subscription_id: str) -> bool:
        """Stop a subscription; its pending deliveries are cancelled. False if unknown."""
        def op(s: Session) -> bool:
            row = s.get(Subscription, subscription_id)
            if row is None or not row.active:
                return False
            row.active = False
            s.add(row)
            for delivery in s.exec(select(Delivery).where(
                    Delivery.subscription_id == subscription_id,
                    Delivery.status == "pending")):
                delivery.status = "cancelled"
                s.add(delivery)
            return True
        return self._run(op)

    def due_deliveries(self, now: datetime, *, limit: int = 100,
                       channel_prefix: str | None = None,
                       exclude_prefix: str | None = None) -> list[Delivery]:
        """Pending outbox rows whose next attempt is due, oldest first."""
        def op(s: Session) -> list[Delivery]:
            q = select(Delivery).where(Delivery.status == "pending",
                                       Delivery.next_attempt_at <= _utc(now))
            if channel_prefix:
                q = q.where(col(Delivery.subscription_id).startswith(channel_prefix))
            if exclude_prefix:
                q = q.where(~col(Delivery.subscription_id).startswith(exclude_prefix))
            return list(s.exec(q.order_by(Delivery.id).limit(limit)))  # type: ignore[arg-type]
        return self._run(op)

    def claim_delivery(self, delivery_id: int, seen_next_attempt_at: datetime,
                       lease_until: datetime) -> bool:
        """Take a due row for one attempt (compare-and-set on ``next_attempt_at``), so two
        dispatchers never send the same row at once. False if another one took it."""
        from sqlalchemy import update

        def op(s: Session) -> bool:
            result = s.exec(update(Delivery).where(
                col(Delivery.id) == delivery_id, col(Delivery.status) == "pending",
                col(Delivery.next_attempt_at) == _utc(seen_next_attempt_at),
            ).values(next_attempt_at=_utc(lease_until)))
            return bool(result.rowcount == 1)
        return self._run(op)

    def finish_delivery(self, delivery_id: int, *, status: str, attempted_at: datetime,
                        next_attempt_at: datetime | None = None,
                        status_code: int | None = None, error: str | None = None) -> None:
        def op(s: Session) -> None:
            row = s.get(Delivery, delivery_id)
            if row is None:
                raise DatabaseError(f"delivery {delivery_id} is not in the outbox",
                                    "it may have been removed; nothing to do")
            row.status = status
            row.attempts += 1
            row.last_status_code = status_code
            row.last_error = error
            if status == "delivered":
                row.delivered_at = _utc(attempted_at)
            if next_attempt_at is not None:
                row.next_attempt_at = _utc(next_attempt_at)
            s.add(row)
        self._run(op)

    def deliveries(self, *, subscription_id: str | None = None, alert_id: str | None = None,
                   statuses: Sequence[str] | None = None, limit: int | None = 100,
                   offset: int = 0) -> list[Delivery]:
        def op(s: Session) -> list[Delivery]:
            q = select(Delivery)
            if subscription_id:
                q = q.where(Delivery.subscription_id == subscription_id)
            if alert_id:
                q = q.where(Delivery.alert_id == alert_id)
            if statuses:
                q = q.where(Delivery.status.in_(list(statuses)))  # type: ignore[attr-defined]
            q = q.order_by(Delivery.id).offset(offset)  # type: ignore[arg-type]
            if limit is not None:
                q = q.limit(limit)
            return list(s.exec(q))
        return self._run(op)


def _alert_filter(q: Any, city_id: str | None, statuses: Sequence[str] | None,
                  bbox: tuple[float, float, float, float] | None,
                  updated_after: datetime | None, updated_since: datetime | None,
                  detected_from: date | None, detected_to: date | None) -> Any:
    if city_id:
        q = q.where(AlertRecord.city_id == city_id)
    if statuses:
        q = q.where(AlertRecord.status.in_(list(statuses)))  # type: ignore[attr-defined]
    if bbox:
        west, south, east, north = bbox
        q = q.where(AlertRecord.maxx >= west, AlertRecord.minx <= east,
                    AlertRecord.maxy >= south, AlertRecord.miny <= north)
    if updated_after:
        q = q.where(AlertRecord.updated_at > _utc(updated_after))
    if updated_since:
        q = q.where(AlertRecord.updated_at >= _utc(updated_since))
    if detected_from:
        q = q.where(AlertRecord.first_detected >= detected_from)
    if detected_to:
        q = q.where(AlertRecord.first_detected <= detected_to)
    return q


def _utc(value: datetime) -> datetime:
    """Timestamps are stored as UTC on both backends; naive input is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
