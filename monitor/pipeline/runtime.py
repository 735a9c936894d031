"""Wire the configured adapters together once per process (the composition root)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from monitor.adapters.bus import create_bus
from monitor.adapters.database import Database
from monitor.domain.city import City
from monitor.ports import Bus
from monitor.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    bus: Bus
    db: Database
    cities: dict[str, City] = field(default_factory=dict)

    def topics(self) -> list[str]:
        b = self.settings.bus
        return [b.scenes_topic, b.changes_topic, b.alerts_topic, b.dead_letter_topic]

    def close(self) -> None:
        self.bus.close()
        self.db.dispose()


def cities_from_settings(settings: Settings) -> dict[str, City]:
    return {
        c.id: City.from_aoi(c.id, c.name, c.aoi(), country=c.country, population=c.population)
        for c in settings.cities
    }


def build_runtime(settings: Settings, *, bus: Bus | None = None,
                  db: Database | None = None) -> Runtime:
    """Open the bus and the database, create topics and schema, register the cities."""
    bus = bus or create_bus(settings.bus)
    db = db or Database(settings.database.url)
    db.init_schema()
    cities = cities_from_settings(settings)
    for city in cities.values():
        db.upsert_city(city.id, city.name, dict(city.aoi.__geo_interface__), city.grid.to_dict(),
                       country=city.country, population=city.population)
    runtime = Runtime(settings=settings, bus=bus, db=db, cities=cities)
    bus.ensure_topics(runtime.topics(), settings.bus.partitions)
    if settings.bus.kind == "embedded":
        republish_unfinished(runtime)
    log.info("runtime ready: bus=%s database=%s cities=%s", settings.bus.kind, db.safe_url,
             ",".join(cities) or "-")
    return runtime


def republish_unfinished(runtime: Runtime) -> int:
    """Embedded mode: the in-process bus starts empty, so scenes that were published (or
    being processed) when the last process stopped are published again from the registry.
    Their deterministic ids make a second application harmless."""
    pending = runtime.db.scenes(statuses=["published", "processing"])
    for scene in pending:
        runtime.bus.publish(runtime.settings.bus.scenes_topic, scene.city_id,
                            scene.event_json.encode("utf-8"))
    if pending:
        log.info("re-published %d unfinished scene(s) from the registry", len(pending))
    return len(pending)
