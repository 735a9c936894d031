"""In-memory fakes of the ports (``monitor.ports``) for unit tests of the pipeline steps.

Each fake keeps the contract of its port (the same outcomes as the real adapter for the
calls the steps make) and records what it was asked, so a test can assert both what a
step did and what it left alone. No files, no network, no threads.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from shapely.geometry import box, shape

from monitor.domain.events import SceneData
from monitor.domain.grid import CityGrid
from monitor.domain.records import SCENE_STATUSES, RegisteredScene, SkippedItem, Watermark
from monitor.domain.scenes import item_datetime
from monitor.domain.state import CityState
from monitor.errors import BusError, CatalogError, DatabaseError, StateError
from monitor.ports import Consumer, Message, SceneRaster


# -- the bus --------------------------------------------------------------------------
class RecordingBus:
    """A bus that records what was published; ``fail`` makes every publish raise."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, bytes]]] = {}
        self.fail = False
        self.flushes = 0

    def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.fail:
            raise BusError(f"fake bus refused a record for {topic}", "set fail = False")
        self.records.setdefault(topic, []).append((key, value))

    def publish_many(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        batch = list(records)
        if self.fail:
            raise BusError(f"fake bus refused {len(batch)} records for {topic}",
                           "set fail = False")
        self.records.setdefault(topic, []).extend(batch)
        return len(batch)

    def flush(self, timeout_s: float = 30.0) -> None:
        self.flushes += 1

    def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        for topic in topics:
            self.records.setdefault(topic, [])

    def consumer(self, topics: Sequence[str], group_id: str, *,
                 client_id: str | None = None) -> Consumer:
        raise AssertionError("the pipeline steps under test do not consume")

    def close(self) -> None:
        pass

    def values(self, topic: str) -> list[bytes]:
        return [value for _, value in self.records.get(topic, [])]

    def keys(self, topic: str) -> list[str]:
        return [key for key, _ in self.records.get(topic, [])]


# -- the scene registry ---------------------------------------------------------------
class MemoryRegistry:
    """The scene registry port in memory, with the SQL adapter's rules."""

    def __init__(self) -> None:
        self.entries: dict[str, RegisteredScene] = {}
        self.watermarks: dict[tuple[str, str], Watermark] = {}
        self.skipped: dict[tuple[str, str, str], SkippedItem] = {}
        self.marks: list[tuple[str, str, str | None]] = []  # (scene id, status, reason)

    def register_scene(self, scene_id: str, *, city_id: str, source: str, provider: str,
                       collection: str, item_id: str, modality: str, acquired: datetime,
                       event_json: str) -> bool:
        if any((e.city_id, e.collection, e.item_id) == (city_id, collection, item_id)
               for e in self.entries.values()):
            return False
        self.entries[scene_id] = RegisteredScene(
            id=scene_id, city_id=city_id, source=source, provider=provider,
            collection=collection, item_id=item_id, modality=modality, acquired=acquired,
            status="discovered", reason=None, event_json=event_json,
            discovered_at=datetime.now(UTC))
        return True

    def known_item_ids(self, city_id: str, collection: str, item_ids: Sequence[str]) -> set[str]:
        return {e.item_id for e in self.entries.values() if e.city_id == city_id
                and e.collection == collection and e.item_id in set(item_ids)}

    def mark_scene(self, scene_id: str, status: str, reason: str | None = None) -> None:
        assert status in SCENE_STATUSES, status
        entry = self.entries.get(scene_id)
        if entry is None:
            raise DatabaseError(f"scene {scene_id} is not in the scene registry",
                                "register it before changing its status")
        self.marks.append((scene_id, status, reason))
        now = datetime.now(UTC)
        if status == "published" and entry.status != "discovered":
            self.entries[scene_id] = replace(entry, published_at=now)
            return
        changes: dict[str, Any] = {"status": status, "reason": reason}
        if status == "published":
            changes["published_at"] = now
        elif status == "processing":
            changes.update(processing_at=now, attempts=entry.attempts + 1)
        else:
            changes["processed_at"] = now
        self.entries[scene_id] = replace(entry, **changes)

    def scene(self, scene_id: str) -> RegisteredScene | None:
        return self.entries.get(scene_id)

    def scenes(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               limit: int | None = None) -> list[RegisteredScene]:
        found = sorted((e for e in self.entries.values()
                        if (city_id is None or e.city_id == city_id)
                        and (not statuses or e.status in statuses)),
                       key=lambda e: (e.acquired, e.id))
        return found[:limit] if limit else found

    def scene_counts(self, city_id: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self.scenes(city_id=city_id):
            counts[e.status] = counts.get(e.status, 0) + 1
        return counts

    def watermark(self, city_id: str, source: str) -> Watermark | None:
        return self.watermarks.get((city_id, source))

    def set_watermark(self, city_id: str, source: str, *, last_acquired: datetime | None,
                      polled_at: datetime, error: str | None = None) -> None:
        old = self.watermarks.get((city_id, source)) or Watermark(city_id, source)
        newest = old.last_acquired
        if last_acquired is not None:
            newest = max(newest, last_acquired) if newest else last_acquired
        self.watermarks[(city_id, source)] = Watermark(city_id, source, newest, polled_at,
                                                       error)

    def record_skipped_item(self, city_id: str, collection: str, item_id: str,
                            reason: str) -> bool:
        key = (city_id, collection, item_id)
        first = key not in self.skipped
        self.skipped[key] = SkippedItem(city_id, collection, item_id, reason,
                                        datetime.now(UTC))
        return first

    def skipped_items(self, city_id: str | None = None) -> list[SkippedItem]:
        return [s for s in self.skipped.values() if city_id is None or s.city_id == city_id]

    def statuses(self) -> dict[str, str]:
        """item id -> status."""
        return {e.item_id: e.status for e in self.entries.values()}


# -- the state store ------------------------------------------------------------------
class MemoryStateStore:
    """Versions of each city's state in memory (copies in, copies out). ``fail_saves``
    makes that many coming saves raise the StateError a failing object store would."""

    def __init__(self) -> None:
        self.versions: dict[str, list[CityState]] = {}
        self.fail_saves = 0
        self.saves = 0

    def latest_version(self, city_id: str) -> int | None:
        return len(self.versions[city_id]) if self.versions.get(city_id) else None

    def load(self, city_id: str) -> CityState | None:
        kept = self.versions.get(city_id)
        return kept[-1].copy() if kept else None

    def save(self, city_id: str, state: CityState) -> int:
        if self.fail_saves:
            self.fail_saves -= 1
            raise StateError(city_id, "the fake store refused the write", "retry later")
        self.versions.setdefault(city_id, []).append(state.copy())
        self.saves += 1
        return len(self.versions[city_id])


# -- reading and models ---------------------------------------------------------------
class FakeReader:
    """Returns the raster that ``raster_for(scene, grid)`` makes; records every read."""

    def __init__(self, raster_for: Callable[[SceneData, CityGrid], SceneRaster]) -> None:
        self.raster_for = raster_for
        self.reads: list[SceneData] = []

    def read(self, scene: SceneData, grid: CityGrid) -> SceneRaster:
        self.reads.append(scene)
        return self.raster_for(scene, grid)


@dataclass(frozen=True)
class FakeModelInfo:
    id: str


@dataclass
class FakeModel:
    """A change model whose p(change) is ``p_for(reference, observation)``."""

    model_id: str
    p_for: Callable[[np.ndarray, np.ndarray], np.ndarray]
    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    needed: list[np.ndarray | None] = field(default_factory=list)  # per call

    @property
    def info(self) -> FakeModelInfo:
        return FakeModelInfo(self.model_id)

    def predict(self, reference: np.ndarray, observation: np.ndarray,
                valid: np.ndarray | None = None, needed: np.ndarray | None = None
                ) -> np.ndarray:
        self.calls.append((reference, observation, valid))
        self.needed.append(needed)
        p = self.p_for(reference, observation).astype(np.float32)
        # as the port allows: only the needed pixels are computed
        return p if needed is None else np.where(needed, p, np.float32(np.nan))


@dataclass
class FakeDualModel:
    """A dual-stream model whose p(change) is ``p_for(s2_reference, s2_observation)``."""

    model_id: str
    p_for: Callable[[np.ndarray, np.ndarray], np.ndarray]
    calls: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    masks: list[tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=list)

    @property
    def info(self) -> FakeModelInfo:
        return FakeModelInfo(self.model_id)

    def predict_dual(self, s2_reference: np.ndarray, s2_observation: np.ndarray,
                     s1_reference: np.ndarray, s1_observation: np.ndarray,
                     valid: np.ndarray | None = None, s1_valid: np.ndarray | None = None
                     ) -> np.ndarray:
        self.calls.append((s2_reference, s2_observation, s1_reference, s1_observation))
        self.masks.append((valid, s1_valid))
        return self.p_for(s2_reference, s2_observation).astype(np.float32)


class TokenSigner:
    """Appends ``?token`` to every asset href (as a SAS signer would)."""

    def __init__(self) -> None:
        self.signed: list[str] = []

    def sign_scene(self, scene: SceneData) -> SceneData:
        self.signed.append(scene.item_id)
        return scene.model_copy(update={"assets": {
            band: asset.model_copy(update={"href": asset.href + "?token"})
            for band, asset in scene.assets.items()}})


# -- STAC ---------------------------------------------------------------------------------
@dataclass
class Search:
    collection: str
    area: Any
    start: datetime | None
    end: datetime | None


class FakeCatalog:
    """A STAC API over ``items``: searches filter by collection, footprint and time, as a
    server does; ``failures`` makes that many coming searches raise CatalogError."""

    def __init__(self, items: Sequence[Mapping[str, Any]]) -> None:
        self.items = [copy.deepcopy(dict(i)) for i in items]
        self.searches: list[Search] = []
        self.failures = 0
        self._requests = 0

    @property
    def requests(self) -> int:
        return self._requests

    def search(self, collection: str, *, intersects: Mapping[str, Any] | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               start: datetime | None = None, end: datetime | None = None,
               query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        self._requests += 1
        area = shape(intersects) if intersects is not None else (box(*bbox) if bbox else None)
        self.searches.append(Search(collection, area, start, end))
        if self.failures:
            self.failures -= 1
            raise CatalogError("fake STAC API is down (HTTP 503)", "the next poll retries")
        found = []
        for item in self.items:
            if item.get("collection") != collection:
                continue
            if area is not None and item.get("geometry") and not shape(
                    item["geometry"]).intersects(area):
                continue
            when = item_datetime(item)
            if (start is None or when >= start) and (end is None or when <= end):
                found.append(copy.deepcopy(item))
        return found


def message_for(topic: str, value: bytes, key: str | None = None, offset: int = 0) -> Message:
    return Message(topic=topic, partition=0, offset=offset, key=key, value=value)
