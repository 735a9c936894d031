"""The scene registry (scenes, watermarks, skipped items) and the city table, in SQL.

Implements ``monitor.ports.SceneRegistry`` and ``CityRepository``; returns the values of
``monitor.domain.records``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from monitor.adapters.sql.engine import SqlRepository, dialect_insert
from monitor.adapters.sql.tables import CityRow, SceneRow, SkippedItemRow, WatermarkRow, _now
from monitor.domain.records import (
    SCENE_STATUSES,
    RegisteredCity,
    RegisteredScene,
    SkippedItem,
    Watermark,
)
from monitor.domain.vocabulary import as_utc
from monitor.errors import DatabaseError


def _maybe_utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _scene(row: SceneRow) -> RegisteredScene:
    return RegisteredScene(
        id=row.id, city_id=row.city_id, source=row.source, provider=row.provider,
        collection=row.collection, item_id=row.item_id, modality=row.modality,
        acquired=as_utc(row.acquired), status=row.status, reason=row.reason,
        event_json=row.event_json, discovered_at=as_utc(row.discovered_at),
        published_at=_maybe_utc(row.published_at), processing_at=_maybe_utc(row.processing_at),
        processed_at=_maybe_utc(row.processed_at), attempts=row.attempts)


def _watermark(row: WatermarkRow) -> Watermark:
    return Watermark(city_id=row.city_id, source=row.source,
                     last_acquired=_maybe_utc(row.last_acquired),
                     last_polled_at=_maybe_utc(row.last_polled_at), last_error=row.last_error)


def _skipped(row: SkippedItemRow) -> SkippedItem:
    return SkippedItem(city_id=row.city_id, collection=row.collection, item_id=row.item_id,
                       reason=row.reason, seen_at=as_utc(row.seen_at))


def _city(row: CityRow) -> RegisteredCity:
    return RegisteredCity(
        id=row.id, name=row.name, country=row.country, aoi=json.loads(row.aoi_geojson),
        grid=json.loads(row.grid_json),
        population={int(k): float(v) for k, v in json.loads(row.population_json or "{}").items()},
        updated_at=_maybe_utc(row.updated_at))


def upsert(session: Session, table: Any, values: dict[str, Any], keys: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET`` the other columns, in the session's
    dialect (PostgreSQL or SQLite, both have it)."""
    statement = dialect_insert(session)(table).values(**values)
    updates = {k: statement.excluded[k] for k in values if k not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)


class SqlSceneRegistry(SqlRepository):
    """The durable record of every scene and where it stands."""

    def register_scene(self, scene_id: str, *, city_id: str, source: str, provider: str,
                       collection: str, item_id: str, modality: str, acquired: datetime,
                       event_json: str) -> bool:
        """Record a discovered scene. False if (city, collection, item) is already known."""
        def op(s: Session) -> bool:
            exists = s.exec(select(SceneRow.id).where(
                SceneRow.city_id == city_id, SceneRow.collection == collection,
                SceneRow.item_id == item_id)).first()
            if exists is not None:
                return False
            s.add(SceneRow(id=scene_id, city_id=city_id, source=source, provider=provider,
                           collection=collection, item_id=item_id, modality=modality,
                           acquired=as_utc(acquired), event_json=event_json))
            return True
        try:
            return self._run(op)
        except IntegrityError:
            return False  # registered concurrently by another scheduler: same outcome

    def known_item_ids(self, city_id: str, collection: str, item_ids: Sequence[str]) -> set[str]:
        if not item_ids:
            return set()
        return self._run(lambda s: set(s.exec(select(SceneRow.item_id).where(
            SceneRow.city_id == city_id, SceneRow.collection == collection,
            SceneRow.item_id.in_(list(item_ids))))))  # type: ignore[attr-defined]

    def mark_scene(self, scene_id: str, status: str, reason: str | None = None) -> None:
        if status not in SCENE_STATUSES:
            raise ValueError(f"unknown scene status {status!r}")

        def op(s: Session) -> None:
            row = s.get(SceneRow, scene_id)
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

    def scene(self, scene_id: str) -> RegisteredScene | None:
        def op(s: Session) -> RegisteredScene | None:
            row = s.get(SceneRow, scene_id)
            return _scene(row) if row is not None else None
        return self._run(op)

    def scenes(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               limit: int | None = None) -> list[RegisteredScene]:
        def op(s: Session) -> list[RegisteredScene]:
            q = select(SceneRow)
            if city_id:
                q = q.where(SceneRow.city_id == city_id)
            if statuses:
                q = q.where(SceneRow.status.in_(list(statuses)))  # type: ignore[attr-defined]
            q = q.order_by(SceneRow.acquired, SceneRow.id)  # type: ignore[arg-type]
            if limit:
                q = q.limit(limit)
            return [_scene(row) for row in s.exec(q)]
        return self._run(op)

    def scene_counts(self, city_id: str | None = None) -> dict[str, int]:
        def op(s: Session) -> dict[str, int]:
            q = select(SceneRow.status, func.count()).group_by(SceneRow.status)
            if city_id:
                q = q.where(SceneRow.city_id == city_id)
            return {status: int(n) for status, n in s.exec(q)}
        return self._run(op)

    # -- watermarks --------------------------------------------------------------------
    def watermark(self, city_id: str, source: str) -> Watermark | None:
        def op(s: Session) -> Watermark | None:
            row = s.get(WatermarkRow, (city_id, source))
            return _watermark(row) if row is not None else None
        return self._run(op)

    def set_watermark(self, city_id: str, source: str, *, last_acquired: datetime | None,
                      polled_at: datetime, error: str | None = None) -> None:
        def op(s: Session) -> None:
            row = (s.get(WatermarkRow, (city_id, source))
                   or WatermarkRow(city_id=city_id, source=source))
            if last_acquired is not None:
                new = as_utc(last_acquired)
                row.last_acquired = (max(as_utc(row.last_acquired), new) if row.last_acquired
                                     else new)
            row.last_polled_at = as_utc(polled_at)
            row.last_error = error
            s.add(row)
        try:
            self._run(op)
        except IntegrityError:  # created concurrently: the second try updates that row
            self._run(op)

    # -- skipped items -----------------------------------------------------------------
    def record_skipped_item(self, city_id: str, collection: str, item_id: str, reason: str) -> bool:
        """True the first time an item is skipped (so the warning is logged once)."""
        def op(s: Session) -> bool:
            row = s.get(SkippedItemRow, (city_id, collection, item_id))
            if row is not None:
                row.reason, row.seen_at = reason, _now()
                s.add(row)
                return False
            s.add(SkippedItemRow(city_id=city_id, collection=collection, item_id=item_id,
                                 reason=reason))
            return True
        try:
            return self._run(op)
        except IntegrityError:  # recorded concurrently by another process
            return self._run(op)

    def skipped_items(self, city_id: str | None = None) -> list[SkippedItem]:
        def op(s: Session) -> list[SkippedItem]:
            q = select(SkippedItemRow)
            if city_id:
                q = q.where(SkippedItemRow.city_id == city_id)
            return [_skipped(row) for row in s.exec(q)]
        return self._run(op)


class SqlCityRepository(SqlRepository):
    """The cities every process registered at start (their AOI, grid and population)."""

    def upsert_city(self, city_id: str, name: str, aoi_geojson: dict[str, Any],
                    grid: dict[str, Any], country: str = "",
                    population: dict[int, float] | None = None) -> None:
        """Register or refresh a city in one atomic statement (``INSERT ... ON CONFLICT
        (id) DO UPDATE``): processes starting together never race on the primary key."""
        values = {"id": city_id, "name": name, "country": country,
                  "aoi_geojson": json.dumps(aoi_geojson), "grid_json": json.dumps(grid),
                  "population_json": json.dumps({str(k): v for k, v in
                                                 (population or {}).items()}),
                  "updated_at": _now()}
        self._run(lambda s: s.exec(upsert(s, CityRow, values, ["id"])))

    def cities(self) -> list[RegisteredCity]:
        return self._run(lambda s: [_city(r) for r in s.exec(select(CityRow).order_by(CityRow.id))])

    def city(self, city_id: str) -> RegisteredCity | None:
        def op(s: Session) -> RegisteredCity | None:
            row = s.get(CityRow, city_id)
            return _city(row) if row is not None else None
        return self._run(op)
