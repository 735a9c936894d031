"""Coverage of a city: what each source served, from the source itself and the registry.

The *listing* of a source for a city comes from two places, merged by item id:

- the STAC API, searched over the city's area **without** the source's cloud or mode
  filter (discovery's server-side prefilter hides too-cloudy scenes; coverage must still
  count them as listed, and unusable where they are all cloud);
- the scene registry (``SceneRegistry.scenes``): what discovery registered, with the time
  discovery first saw each scene (the listing time when the item carries no
  ``published``/``created``), and the worker's outcome (a scene skipped because nothing of
  the city was clear is listed but unusable). Scenes the API no longer lists still count.

``listing="registry"`` uses the registry only (no request to the provider: the cloud
filter's victims then look missing, the report says so); ``listing="stac"`` the API only.

:class:`CoverageWatch` is the gap detector the scheduler runs every
``coverage.check_minutes``: it evaluates each city and source as of the previous check
and as of now from the same listing, and publishes a ``org.urbanmonitor.coverage.gap.v1``
CloudEvent for every gap that opened or closed in between (ids are deterministic, so a
repeated check publishes nothing new to a de-duplicating consumer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shapely.geometry import mapping

from monitor.domain.coverage import (
    CoverageParams,
    Gap,
    GapChange,
    ListedItem,
    SourceCoverage,
    assess_source,
    find_gaps,
    gap_changes,
    listed_item_from_stac,
)
from monitor.domain.events import (
    CloudEvent,
    CoverageGapData,
    GapAcquisition,
    SceneData,
    coverage_gap_event,
    deterministic_id,
    parse_event,
    utc_now,
)
from monitor.domain.records import Delivery, RegisteredScene
from monitor.domain.vocabulary import as_utc, iso_utc
from monitor.errors import CatalogError, EventError, UrbanMonitorError
from monitor.ports import Bus, SceneCatalog, SceneRegistry
from monitor.settings import CoverageSettings, Settings, SourceSettings

log = logging.getLogger(__name__)

Listing = Literal["stac+registry", "registry", "stac"]
LISTINGS: tuple[str, ...] = ("stac+registry", "registry", "stac")
CatalogFactory = Callable[[SourceSettings], SceneCatalog]
# Worker skip reasons that mean "listed, but nothing of the city could be seen".
_UNUSABLE_SKIPS = ("of the city is clear", "does not cover the city")


def coverage_params(settings: CoverageSettings) -> CoverageParams:
    return CoverageParams(grace=timedelta(hours=settings.grace_hours),
                          lost_after_cycles=settings.lost_after_cycles,
                          min_fill=settings.min_fill)


def listed_item_from_scene(scene: RegisteredScene) -> ListedItem:
    """A registered scene as a listed item: its SceneEvent's platform, orbit and published
    time, discovery's first sighting, and the worker's outcome."""
    data: SceneData | None = None
    try:
        parsed = parse_event(scene.event_json).data
        data = parsed if isinstance(parsed, SceneData) else None
    except EventError:
        data = None
    props: dict[str, Any] = {"datetime": iso_utc(scene.acquired)}
    if data is not None:
        props.update({"platform": data.platform, "sat:relative_orbit": data.relative_orbit,
                      "eo:cloud_cover": data.cloud_cover})
        if data.published is not None:
            props["published"] = iso_utc(data.published)
    item = listed_item_from_stac({"id": scene.item_id, "properties": props},
                                 discovered_at=scene.discovered_at)
    assert item is not None  # it has an id and a datetime
    if scene.status == "skipped" and scene.reason and any(
            words in scene.reason for words in _UNUSABLE_SKIPS):
        item = ListedItem(**{**item.__dict__, "unusable": f"worker: {scene.reason}"})
    return item


def merge_listings(served: Sequence[dict[str, Any]], registered: Sequence[RegisteredScene]
                   ) -> list[ListedItem]:
    """STAC items and registry scenes of one source, one per item id. The served item's
    properties win; the registry adds the discovery time (when the item has no
    published/created) and the worker's verdict."""
    from_registry = {s.item_id: s for s in registered}
    out: dict[str, ListedItem] = {}
    for raw in served:
        scene = from_registry.get(str(raw.get("id")))
        item = listed_item_from_stac(raw, discovered_at=scene.discovered_at if scene else None)
        if item is None:
            continue
        if scene is not None:
            worker = listed_item_from_scene(scene)
            if item.unusable is None and worker.unusable is not None:
                item = ListedItem(**{**item.__dict__, "unusable": worker.unusable})
        out[item.item_id] = item
    for item_id, scene in from_registry.items():
        if item_id not in out:
            out[item_id] = listed_item_from_scene(scene)
    return sorted(out.values(), key=lambda i: (i.acquired, i.item_id))


@dataclass
class CityCoverage:
    city_id: str
    start: datetime
    end: datetime
    as_of: datetime
    listing: str
    sources: list[SourceCoverage] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"city_id": self.city_id, "start": iso_utc(self.start), "end": iso_utc(self.end),
                "as_of": iso_utc(self.as_of), "listing": self.listing,
                "sources": [s.to_dict() for s in self.sources],
                "errors": self.errors, "notes": self.notes}


class CoverageService:
    """Builds coverage reports and gap changes for the configured cities and sources."""

    def __init__(self, settings: Settings, *, registry: SceneRegistry | None,
                 catalog_for: CatalogFactory | None) -> None:
        self.settings = settings
        self.registry = registry
        self.catalog_for = catalog_for
        self.params = coverage_params(settings.coverage)
        self._catalogs: dict[str, SceneCatalog] = {}

    def _catalog(self, source: SourceSettings) -> SceneCatalog:
        if self.catalog_for is None:
            raise UrbanMonitorError("no STAC catalog to list from",
                                    "use listing 'registry' or give a catalog factory")
        if source.name not in self._catalogs:
            self._catalogs[source.name] = self.catalog_for(source)
        return self._catalogs[source.name]

    def sources(self, names: Sequence[str] | None = None) -> list[SourceSettings]:
        if names:
            known = {s.name: s for s in self.settings.sources}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise UrbanMonitorError(f"unknown source(s) {unknown}",
                                        f"use one of {sorted(known)}")
            return [known[n] for n in names]
        return [s for s in self.settings.sources if s.enabled]

    def listing(self, city_id: str, source: SourceSettings, start: datetime, end: datetime,
                listing: str) -> tuple[list[ListedItem], str | None]:
        """Everything ``source`` listed for the city with an acquisition in start..end,
        and the error of the API search (then the registry alone), if any."""
        if listing not in LISTINGS:
            raise UrbanMonitorError(f"unknown listing {listing!r}", f"use one of {LISTINGS}")
        city = self.settings.city(city_id)
        served: list[dict[str, Any]] = []
        error = None
        if listing in ("stac+registry", "stac"):
            try:
                served = self._catalog(source).search(
                    source.collection, intersects=mapping(city.aoi()), start=start, end=end)
            except CatalogError as exc:
                error = str(exc)
                log.warning("coverage of %s, source %s: the search failed (%s); using the "
                            "scene registry only", city_id, source.name, exc)
        registered: list[RegisteredScene] = []
        if listing in ("stac+registry", "registry") and self.registry is not None:
            registered = [s for s in self.registry.scenes(city_id=city_id)
                          if s.source == source.name and start <= s.acquired <= end]
        return merge_listings(served, registered), error

    def city(self, city_id: str, *, start: datetime | None = None, end: datetime | None = None,
             as_of: datetime | None = None, sources: Sequence[str] | None = None,
             listing: str = "stac+registry") -> CityCoverage:
        """The coverage report of one city (default window: the last 30 days)."""
        self.settings.city(city_id)  # a clear error for an unknown city
        as_of = as_utc(as_of or utc_now())
        end = as_utc(end) if end else as_of
        start = as_utc(start) if start else end - timedelta(days=30)
        if end < start:
            raise UrbanMonitorError(f"coverage window {start:%Y-%m-%d}..{end:%Y-%m-%d} is empty",
                                    "give --start before --end")
        learn_from = start - timedelta(days=self.settings.coverage.learn_days)
        report = CityCoverage(city_id=city_id, start=start, end=end, as_of=as_of,
                              listing=listing)
        if listing == "registry":
            report.notes.append("listing from the scene registry only: scenes discovery "
                                "filtered out (e.g. cloud cover) were never registered and "
                                "show as missing")
        for source in self.sources(sources):
            items, error = self.listing(city_id, source, learn_from, max(end, as_of), listing)
            if error:
                report.errors[source.name] = error
            modality = self.settings.collection(source.provider, source.collection).modality
            report.sources.append(assess_source(
                items, source=source.name, collection=source.collection, start=start, end=end,
                as_of=as_of, modality=modality, params=self.params))
        return report


def gap_event(city_id: str, coverage: SourceCoverage, change: GapChange,
              source_label: str = "urban-monitor/coverage") -> CloudEvent:
    gap: Gap = change.gap
    resumed = gap.resumed_with
    closed_at = gap.closed_at or (coverage.as_of if change.state == "closed" else None)
    data = CoverageGapData(
        city_id=city_id, source=coverage.source, collection=coverage.collection,
        state=change.state, reason=change.reason,
        gap_id=deterministic_id("gap", city_id, gap.key),
        first_expected=gap.missing[0].at, last_expected=gap.missing[-1].at,
        missing=[GapAcquisition(date=e.day, expected_at=e.at, unit=e.unit, orbit=e.orbit)
                 for e in gap.missing],
        opened_at=gap.opened_at, closed_at=closed_at if change.state == "closed" else None,
        resumed_item_ids=list(resumed.item_ids) if resumed and change.state == "closed" else [],
        grace_hours=coverage.params.grace.total_seconds() / 3600)
    return coverage_gap_event(data, source=source_label)


class CoverageWatch:
    """Publishes coverage gap events: each :meth:`check` compares every city and source as
    of the previous check with now. ``now`` is injectable (simulated clocks)."""

    def __init__(self, settings: Settings, bus: Bus, service: CoverageService, *,
                 topic: str | None = None, window_days: float = 30.0,
                 listing: str = "stac+registry", outbox: Any | None = None) -> None:
        self.settings = settings
        self.bus = bus
        # The alert outbox (``save_alert_changes`` + ``subscriptions``): gap events for the
        # webhook subscriptions named in coverage.webhook_subscriptions go out through it.
        self.outbox = outbox
        self.service = service
        self.topic = topic or settings.coverage.topic
        self.window = timedelta(days=window_days)
        self.listing = listing
        self.last_check: datetime | None = None

    def changes(self, city_id: str, source: SourceSettings, before: datetime, now: datetime
                ) -> list[CloudEvent]:
        start = before - self.window
        items, _ = self.service.listing(
            city_id, source, start - timedelta(days=self.settings.coverage.learn_days), now,
            self.listing)
        modality = self.settings.collection(source.provider, source.collection).modality

        def at(when: datetime) -> SourceCoverage:
            return assess_source(items, source=source.name, collection=source.collection,
                                 start=start, end=when, as_of=when, modality=modality,
                                 params=self.service.params)

        old, new = at(before), at(now)
        return [gap_event(city_id, new, c) for c in gap_changes(find_gaps(old), find_gaps(new))]

    def check(self, now: datetime | None = None, *, since: datetime | None = None,
              city_ids: Sequence[str] | None = None) -> list[CloudEvent]:
        """Publish the gap events between ``since`` (default: the previous check, else
        one check interval ago) and ``now``; return them."""
        now = as_utc(now or utc_now())
        before = as_utc(since or self.last_check
                        or now - timedelta(minutes=self.settings.coverage.check_minutes))
        events: list[CloudEvent] = []
        cities = city_ids or [c.id for c in self.settings.cities]
        for city_id in cities:
            for source in self.service.sources():
                try:
                    found = self.changes(city_id, source, before, now)
                except UrbanMonitorError as exc:
                    log.error("coverage check of %s, source %s failed: %s", city_id,
                              source.name, exc)
                    continue
                if found:
                    self.bus.publish_many(self.topic, [(city_id, e.to_json()) for e in found])
                    self._queue_webhooks(city_id, found)
                    for e in found:
                        assert isinstance(e.data, CoverageGapData)
                        log.warning("coverage gap %s: city %s, source %s, %d acquisition(s) "
                                    "from %s (%s)", e.data.state, city_id, source.name,
                                    len(e.data.missing), f"{e.data.first_expected:%Y-%m-%d}",
                                    e.data.reason)
                    events.extend(found)
        self.last_check = now
        return events

    def _queue_webhooks(self, city_id: str, events: Sequence[CloudEvent]) -> int:
        """Outbox rows for the subscriptions that asked for gap events (by id or name, in
        ``coverage.webhook_subscriptions``) and cover the city. The alert dispatcher sends
        them like AlertEvents (signed, retried); a repeated event is not queued twice."""
        wanted = set(self.settings.coverage.webhook_subscriptions)
        if not wanted or self.outbox is None:
            return 0
        subscribers = [s for s in self.outbox.subscriptions(active_only=True)
                       if (s.id in wanted or s.name in wanted)
                       and (not s.cities or city_id in s.cities)]
        rows: list[Delivery] = []
        for event in events:
            assert isinstance(event.data, CoverageGapData)
            payload = event.to_json().decode("utf-8")
            rows.extend(Delivery(subscription_id=s.id, event_id=event.id,
                                 alert_id=event.data.gap_id, payload=payload, city_id=city_id)
                        for s in subscribers)
        return int(self.outbox.save_alert_changes([], rows)) if rows else 0
