"""Scene discovery: search STAC APIs for new acquisitions over each city and publish them.

One *poll* of a source (a provider's collection) does, for every city:

1. re-publish scenes that were registered but never acknowledged by the bus (it was down);
2. search from (the city's watermark - lookback) to ``now`` — the lookback catches items
   that the provider lists late, with an acquisition time older than the watermark;
3. match items to cities by footprint, drop unwanted ones (cloud cover, radar mode,
   polarisations), skip and record malformed ones (never crash), de-duplicate by
   (city, collection, item id) in the scene registry;
4. register each new scene as ``discovered``, publish its SceneEvent (key = city id, in
   acquisition order), mark it ``published``; move the watermark forward.

Two search strategies, measured side by side in ``tests/benchmarks``: ``naive`` (one search
per city) and ``batched`` (one search per group of nearby cities, their union as the
search area, items assigned to cities by intersection). Both run on a bounded thread pool.

``now`` is always injectable (``poll_source(source, now=...)``, or a ``clock``), so the
same code replays a synthetic archive on a simulated clock (:func:`replay_schedule`).

The cycle works through ports: the bus, the scene registry, and one STAC catalog per
source made by ``catalog_for`` (the composition root, ``monitor.pipeline.runtime.
discovery_cycle``, passes ``monitor.adapters.stac.StacCatalog``; tests pass fakes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shapely.geometry import mapping

from monitor.domain.events import CloudEvent, SceneData, scene_event, utc_now
from monitor.domain.scenes import (
    CityArea,
    CityIndex,
    filter_reason,
    group_cities,
    item_datetime,
    item_geometry,
    item_id_of,
    scene_from_item,
    search_area,
    search_window,
    sort_key,
)
from monitor.domain.vocabulary import as_utc
from monitor.errors import BusError, CatalogError, ItemError, UrbanMonitorError
from monitor.ports import Bus, SceneCatalog, SceneRegistry
from monitor.settings import Settings, SourceSettings

log = logging.getLogger(__name__)

Strategy = Literal["naive", "batched"]
Clock = Callable[[], datetime]
CatalogFactory = Callable[[SourceSettings], SceneCatalog]  # one catalog per source


@dataclass
class CycleReport:
    """What one poll of one source did (summed over its cities)."""

    source: str
    now: datetime
    strategy: str = "batched"
    cities: int = 0
    searches: int = 0
    requests: int = 0
    items_seen: int = 0
    published: int = 0
    republished: int = 0
    pending: int = 0
    duplicates: int = 0
    late: int = 0
    filtered: int = 0
    skipped: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    published_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    search_seconds: float = 0.0  # summed over threads: time spent waiting on the STAC API

    def add(self, other: CycleReport) -> None:
        for name in ("searches", "search_seconds", "items_seen", "published", "republished", "pending",
                     "duplicates", "late", "filtered", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.published_ids.extend(other.published_ids)

    def summary(self) -> str:
        return (f"{self.source} @ {self.now:%Y-%m-%dT%H:%M:%SZ}: {self.cities} cities, "
                f"{self.searches} searches, {self.requests} requests, {self.items_seen} items, "
                f"{self.published} published, {self.republished} re-published, "
                f"{self.pending} pending, {self.duplicates} known, {self.late} late, "
                f"{self.filtered} filtered, {self.skipped} skipped, "
                f"{len(self.errors)} failed, {self.seconds:.2f} s")


@dataclass
class BackfillReport:
    city_id: str
    start: datetime
    end: datetime
    items_seen: int = 0
    published: int = 0
    duplicates: int = 0
    filtered: int = 0
    skipped: int = 0
    pending: int = 0
    published_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Publisher:
    """Publishes a cycle's events; after the first bus failure it stops trying (the rest
    stay ``discovered`` in the registry and go out on the next cycle)."""

    def __init__(self, bus: Bus, registry: SceneRegistry, topic: str) -> None:
        self.bus, self.registry, self.topic = bus, registry, topic
        self.failed = threading.Event()
        self.error: str | None = None

    def publish(self, city_id: str, events: Sequence[tuple[str, bytes]]) -> int:
        """Publish ``(scene id, event json)`` for one city in order; return how many went."""
        if not events or self.failed.is_set():
            return 0
        try:
            self.bus.publish_many(self.topic, [(city_id, value) for _, value in events])
        except BusError as exc:
            self.failed.set()
            self.error = str(exc)
            log.error("publishing scenes of city %s failed; they stay 'discovered' and are "
                      "published again on the next poll: %s", city_id, exc)
            return 0
        for scene_id, _ in events:
            self.registry.mark_scene(scene_id, "published")
        return len(events)


class DiscoveryCycle:
    """Polls the configured sources for the configured cities. Thread-safe per source.

    ``catalog_for`` opens the STAC catalog of a source (called once per source).
    ``clock`` gives "now" when a poll is not given one (simulated clocks replay archives).
    ``strategy``: ``batched`` (default) or ``naive``; ``max_workers`` bounds concurrency.
    """

    def __init__(self, settings: Settings, bus: Bus, registry: SceneRegistry, *,
                 catalog_for: CatalogFactory, clock: Clock = utc_now,
                 strategy: Strategy = "batched", max_workers: int = 8, batch_size: int = 50,
                 topic: str | None = None, source_label: str = "urban-monitor/scheduler") -> None:
        if strategy not in ("naive", "batched"):
            raise ValueError(f"unknown discovery strategy {strategy!r}; use 'naive' or 'batched'")
        self.settings = settings
        self.bus = bus
        self.registry = registry
        self.catalog_for = catalog_for
        self.clock = clock
        self.strategy: Strategy = strategy
        self.max_workers = max(1, max_workers)
        self.batch_size = max(1, batch_size)
        self.topic = topic or settings.bus.scenes_topic
        self.source_label = source_label
        self.cities = [CityArea(c.id, c.aoi()) for c in settings.cities]
        self._catalogs: dict[str, SceneCatalog] = {}
        self._catalog_lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------
    def source(self, name: str) -> SourceSettings:
        for source in self.settings.sources:
            if source.name == name:
                return source
        raise UrbanMonitorError(f"unknown source '{name}'",
                                f"use one of {[s.name for s in self.settings.sources]}")

    def catalog(self, source: SourceSettings) -> SceneCatalog:
        """One catalog per source, so request counts are per source."""
        with self._catalog_lock:
            catalog = self._catalogs.get(source.name)
            if catalog is None:
                catalog = self.catalog_for(source)
                self._catalogs[source.name] = catalog
            return catalog

    def _select_cities(self, city_ids: Sequence[str] | None) -> list[CityArea]:
        if city_ids is None:
            return list(self.cities)
        wanted = set(city_ids)
        unknown = wanted - {c.id for c in self.cities}
        if unknown:
            raise UrbanMonitorError(f"unknown city id(s) {sorted(unknown)}",
                                    "add them to the cities file or fix the id")
        return [c for c in self.cities if c.id in wanted]

    @staticmethod
    def _query(source: SourceSettings, modality: str) -> dict[str, Any] | None:
        if modality == "s2" and source.max_cloud_cover is not None:
            return {"eo:cloud_cover": {"lte": source.max_cloud_cover}}
        if modality == "s1" and source.s1_instrument_mode:
            return {"sar:instrument_mode": {"eq": source.s1_instrument_mode}}
        return None

    # -- polling -------------------------------------------------------------------------
    def poll_once(self, now: datetime | None = None, *, sources: Sequence[str] | None = None,
                  city_ids: Sequence[str] | None = None) -> list[CycleReport]:
        """Poll every enabled source (or the named ones) once, at ``now``."""
        now = now or self.clock()
        chosen = ([self.source(n) for n in sources] if sources is not None
                  else [s for s in self.settings.sources if s.enabled])
        return [self.poll_source(s, now, city_ids=city_ids) for s in chosen]

    def poll_source(self, source: SourceSettings, now: datetime | None = None, *,
                    city_ids: Sequence[str] | None = None) -> CycleReport:
        """One poll of one source for all (or the given) cities. Never raises for a
        failing API or item: failures are logged, recorded in the watermark, reported."""
        now = as_utc(now or self.clock())
        started = time.perf_counter()
        catalog = self.catalog(source)
        requests_before = catalog.requests
        cities = self._select_cities(city_ids)
        report = CycleReport(source=source.name, now=now, strategy=self.strategy,
                             cities=len(cities))
        publisher = _Publisher(self.bus, self.registry, self.topic)
        report.republished, report.pending = self._republish_pending(
            source, {c.id for c in cities}, publisher)

        lookback = timedelta(days=source.lookback_days)
        windows: dict[str, tuple[datetime, datetime]] = {}
        previous: dict[str, datetime | None] = {}
        for city in cities:
            mark = self.registry.watermark(city.id, source.name)
            last = mark.last_acquired if mark else None
            previous[city.id] = last
            windows[city.id] = search_window(last, now, lookback)

        if self.strategy == "batched":
            groups = group_cities(cities, max_per_group=self.batch_size)
        else:
            groups = [[city] for city in cities]

        def run(group: list[CityArea]) -> CycleReport:
            return self._poll_group(source, catalog, group, windows, previous, now, publisher)

        if len(groups) > 1 and self.max_workers > 1:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(groups)),
                                    thread_name_prefix=f"discover-{source.name}") as pool:
                partials = list(pool.map(run, groups))
        else:
            partials = [run(g) for g in groups]
        for partial in partials:
            report.add(partial)
        report.requests = catalog.requests - requests_before
        report.seconds = time.perf_counter() - started
        level = logging.WARNING if report.errors else logging.INFO
        log.log(level, "discovery %s", report.summary())
        return report

    def _poll_group(self, source: SourceSettings, catalog: SceneCatalog,
                    group: list[CityArea], windows: dict[str, tuple[datetime, datetime]],
                    previous: dict[str, datetime | None], now: datetime,
                    publisher: _Publisher) -> CycleReport:
        report = CycleReport(source=source.name, now=now, strategy=self.strategy)
        collection = self.settings.collection(source.provider, source.collection)
        start = min(windows[c.id][0] for c in group)
        area = search_area(group) if len(group) > 1 else dict(mapping(group[0].aoi))
        report.searches += 1
        search_started = time.perf_counter()
        try:
            items = catalog.search(source.collection, intersects=area, start=start, end=now,
                                   query=self._query(source, collection.modality))
        except CatalogError as exc:
            report.search_seconds += time.perf_counter() - search_started
            log.error("discovery %s for %d city(ies) (%s%s) failed: %s", source.name,
                      len(group), ", ".join(c.id for c in group[:5]),
                      ", ..." if len(group) > 5 else "", exc)
            for city in group:
                report.errors[city.id] = str(exc)
                self._set_watermark(city.id, source.name, None, now, str(exc))
            return report
        report.search_seconds += time.perf_counter() - search_started
        report.items_seen += len(items)

        index = CityIndex(group)
        by_city: dict[str, list[dict[str, Any]]] = {c.id: [] for c in group}
        for item in items:
            try:
                item_id_of(item)
                geometry = item_geometry(item)
            except ItemError as exc:
                # Without a usable footprint, the bbox says which cities it concerns; with
                # neither, every city of this search does (the server returned it for them).
                bbox = item.get("bbox")
                targets = (index.near_bbox(bbox) if isinstance(bbox, list) and len(bbox) >= 4
                           and all(isinstance(v, int | float) for v in bbox[:4])
                           else [c.id for c in group])
                for city_id in targets:
                    report.skipped += 1
                    self._record_skipped(city_id, source.collection, exc)
                continue
            for city_id in index.hits(geometry):
                by_city[city_id].append(item)

        for city in group:
            try:
                partial = self._process_city(source, city.id, by_city[city.id],
                                             windows[city.id], previous[city.id], now, publisher)
                report.add(partial)
            except UrbanMonitorError as exc:  # database trouble for this city: go on
                log.error("discovery %s for city %s failed: %s", source.name, city.id, exc)
                report.errors[city.id] = str(exc)
        return report

    def _process_city(self, source: SourceSettings, city_id: str, items: list[dict[str, Any]],
                      window: tuple[datetime, datetime], previous: datetime | None,
                      now: datetime, publisher: _Publisher) -> CycleReport:
        report = CycleReport(source=source.name, now=now, strategy=self.strategy)
        start, end = window
        in_window: list[tuple[datetime, dict[str, Any]]] = []
        for item in sorted(items, key=sort_key):
            try:
                acquired = item_datetime(item)
            except ItemError as exc:
                report.skipped += 1
                self._record_skipped(city_id, source.collection, exc)
                continue
            # The batch searched from its oldest window; each city keeps to its own.
            if start <= acquired <= end:
                in_window.append((acquired, item))
        newest = max((a for a, _ in in_window), default=None)

        events, ids = self._new_events(source, city_id, [i for _, i in in_window], report)
        for event in events:
            assert isinstance(event.data, SceneData)
            if previous is not None and event.data.acquired < previous:
                report.late += 1
        published = publisher.publish(city_id, [(e.id, e.to_json()) for e in events])
        report.published += published
        report.pending += len(events) - published
        report.published_ids.extend(ids[:published])
        error = (f"publishing failed, {len(events) - published} scene(s) pending: "
                 f"{publisher.error}" if published < len(events) else None)
        self._set_watermark(city_id, source.name, newest, now, error)
        return report

    def _new_events(self, source: SourceSettings, city_id: str, items: list[dict[str, Any]],
                    report: CycleReport) -> tuple[list[CloudEvent], list[str]]:
        """Register the items that are new for this city; return their events in order."""
        collection = self.settings.collection(source.provider, source.collection)
        provider = self.settings.providers[source.provider]
        known = self.registry.known_item_ids(city_id, source.collection,
                                       [str(i.get("id")) for i in items])
        events: list[CloudEvent] = []
        ids: list[str] = []
        for item in items:
            item_id = str(item.get("id"))
            if item_id in known:
                report.duplicates += 1
                continue
            reason = filter_reason(item, modality=collection.modality,
                                   max_cloud_cover=source.max_cloud_cover,
                                   instrument_mode=source.s1_instrument_mode,
                                   polarizations=source.s1_polarizations)
            if reason is not None:
                report.filtered += 1
                log.debug("item %s for city %s filtered out: %s", item_id, city_id, reason)
                continue
            try:
                scene = scene_from_item(item, city_id=city_id, provider=source.provider,
                                        stac_api=provider.url, collection=source.collection,
                                        modality=collection.modality,
                                        asset_keys=collection.assets,
                                        polarizations=source.s1_polarizations)
            except ItemError as exc:
                report.skipped += 1
                self._record_skipped(city_id, source.collection, exc)
                continue
            event = scene_event(scene, source=self.source_label)
            if self.registry.register_scene(event.id, city_id=city_id, source=source.name,
                                      provider=source.provider, collection=source.collection,
                                      item_id=item_id, modality=collection.modality,
                                      acquired=scene.acquired,
                                      event_json=event.to_json().decode("utf-8")):
                events.append(event)
                ids.append(item_id)
            else:
                report.duplicates += 1
        return events, ids

    def _republish_pending(self, source: SourceSettings, city_ids: set[str],
                           publisher: _Publisher) -> tuple[int, int]:
        """Publish scenes registered earlier whose publication failed. Returns
        (re-published, still pending)."""
        pending = [s for s in self.registry.scenes(statuses=["discovered"])
                   if s.source == source.name and s.city_id in city_ids]
        if not pending:
            return 0, 0
        by_city: dict[str, list[tuple[str, bytes]]] = {}
        for scene in pending:  # already in acquisition order
            by_city.setdefault(scene.city_id, []).append((scene.id,
                                                          scene.event_json.encode("utf-8")))
        done = sum(publisher.publish(city_id, events) for city_id, events in by_city.items())
        if done:
            log.info("re-published %d scene(s) of source %s that the bus had not taken",
                     done, source.name)
        return done, len(pending) - done

    def _record_skipped(self, city_id: str, collection: str, exc: ItemError) -> None:
        first = self.registry.record_skipped_item(city_id, collection, exc.item_id, exc.what)
        if first:
            log.warning("skipped %s item %s for city %s: %s", collection, exc.item_id,
                        city_id, exc.what)

    def _set_watermark(self, city_id: str, source: str, newest: datetime | None,
                       now: datetime, error: str | None) -> None:
        try:
            self.registry.set_watermark(city_id, source, last_acquired=newest, polled_at=now,
                                  error=error[:2000] if error else None)
        except UrbanMonitorError as exc:
            log.error("could not record the watermark of city %s, source %s: %s",
                      city_id, source, exc)

    # -- backfill ------------------------------------------------------------------------
    def backfill(self, city_id: str, start: datetime, end: datetime, *,
                 sources: Sequence[str] | None = None, progress: bool = True) -> BackfillReport:
        """Publish a city's history between ``start`` and ``end`` in acquisition order
        (all sources merged). Known scenes are not published again; watermarks are left
        alone (they track the live edge). Raises :class:`CatalogError` if a search fails."""
        from tqdm import tqdm

        started = time.perf_counter()
        city = self._select_cities([city_id])[0]
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            raise UrbanMonitorError(f"backfill window {start:%Y-%m-%d} .. {end:%Y-%m-%d} is empty",
                                    "give --start before --end")
        chosen = ([self.source(n) for n in sources] if sources
                  else [s for s in self.settings.sources if s.enabled])
        report = BackfillReport(city_id=city_id, start=start, end=end)
        found: list[tuple[tuple[datetime, str], SourceSettings, dict[str, Any]]] = []
        for source in chosen:
            modality = self.settings.collection(source.provider, source.collection).modality
            items = self.catalog(source).search(
                source.collection, intersects=mapping(city.aoi), start=start, end=end,
                query=self._query(source, modality))
            for item in items:
                try:
                    item_id_of(item)
                    if not city.aoi.intersects(item_geometry(item)):
                        continue
                    acquired = item_datetime(item)
                except ItemError as exc:
                    report.skipped += 1
                    self._record_skipped(city_id, source.collection, exc)
                    continue
                if start <= acquired <= end:
                    found.append(((acquired, str(item["id"])), source, item))
        found.sort(key=lambda f: f[0])
        report.items_seen = len(found)
        publisher = _Publisher(self.bus, self.registry, self.topic)
        bar = tqdm(found, desc=f"backfill {city_id}", unit="item", disable=not progress)
        for _, source, item in bar:
            partial = CycleReport(source=source.name, now=end)
            events, ids = self._new_events(source, city_id, [item], partial)
            published = publisher.publish(city_id, [(e.id, e.to_json()) for e in events])
            report.published += published
            report.pending += len(events) - published
            report.published_ids.extend(ids[:published])
            report.duplicates += partial.duplicates
            report.filtered += partial.filtered
            report.skipped += partial.skipped
            bar.set_postfix(published=report.published, known=report.duplicates)
        bar.close()
        self.bus.flush()
        report.seconds = time.perf_counter() - started
        log.info("backfill %s %s..%s: %d items, %d published, %d known, %d filtered, "
                 "%d skipped, %d pending, %.1f s", city_id, f"{start:%Y-%m-%d}",
                 f"{end:%Y-%m-%d}", report.items_seen, report.published, report.duplicates,
                 report.filtered, report.skipped, report.pending, report.seconds)
        return report


def replay_schedule(cycle: DiscoveryCycle, start: datetime, end: datetime, *,
                    sources: Sequence[str] | None = None) -> Iterator[CycleReport]:
    """Poll as the live scheduler would, on a simulated clock from ``start`` to ``end``:
    each source at its own ``interval_minutes``, the earliest due poll first."""
    chosen = ([cycle.source(n) for n in sources] if sources is not None
              else [s for s in cycle.settings.sources if s.enabled])
    due = {s.name: as_utc(start) for s in chosen}
    by_name = {s.name: s for s in chosen}
    end = as_utc(end)
    while due:
        name, when = min(due.items(), key=lambda kv: (kv[1], kv[0]))
        if when > end:
            return
        yield cycle.poll_source(by_name[name], now=when)
        due[name] = when + timedelta(minutes=by_name[name].interval_minutes)

