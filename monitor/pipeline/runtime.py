"""The composition root: the one place that turns ``Settings`` into adapters and wires
them into the pipeline steps.

Every process gets its workers and loops here: the services (``services/*``,
``urban-monitor serve``), the CLI commands, the demo, and the fault and load tools. The
steps themselves (``discovery``, ``inference``, ``alerting``, ``outbox``) only know the
ports of ``monitor.ports``; which adapter stands behind a port is decided here, from the
settings, unless the caller overrides it:

- ``build_runtime(settings, bus=, db=, cities=)``: the bus, the database and the cities
  (the demo passes an in-process bus and the archive's grid);
- ``build_worker(runtime, store=, reader=, s2_model=, s1_model=)``: the inference worker
  (the fault tool passes a state store that fails on purpose);
- ``discovery_cycle(settings, bus, registry, catalog_for=, backoff_s=)``: discovery with
  one STAC catalog per source;
- ``build_alerting_loop`` / ``run_alerting`` / ``run_inference``: the consume loops;
- :func:`install_stop_handlers`: SIGTERM/SIGINT stop a process after the work in hand.

Heavy adapters (rasterio, onnxruntime) are imported inside the builders that need them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.adapters.bus import create_bus
from monitor.adapters.database import Database
from monitor.domain.city import City
from monitor.domain.events import CHANGE_TYPE, SCENE_TYPE, CloudEvent
from monitor.errors import UrbanMonitorError
from monitor.pipeline.consuming import ConsumeStats, EventLoop
from monitor.ports import (
    Bus,
    ChangeModel,
    DualChangeModel,
    SceneCatalog,
    SceneReader,
    SceneRegistry,
    StatePublisher,
    StateRepository,
)
from monitor.settings import Settings, SourceSettings

if TYPE_CHECKING:
    from monitor.adapters.layer_store import LayerStore
    from monitor.pipeline.alerting import AlertingHandler
    from monitor.pipeline.discovery import CatalogFactory, DiscoveryCycle
    from monitor.pipeline.inference import InferenceWorker
    from monitor.pipeline.products import LayerPublisher

log = logging.getLogger(__name__)


# -- the process's shared adapters ------------------------------------------------------
@dataclass
class Runtime:
    """What one process opens once: settings, bus, database, the cities it serves."""

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


def open_database(settings: Settings) -> Database:
    """The settings' database with its schema in place (every repository over one pool)."""
    db = Database(settings.database.url)
    db.init_schema()
    return db


def build_runtime(settings: Settings, *, bus: Bus | None = None, db: Database | None = None,
                  cities: dict[str, City] | None = None) -> Runtime:
    """Open the bus and the database, create topics and schema, register the cities."""
    bus = bus or create_bus(settings.bus)
    if db is None:
        db = open_database(settings)
    else:
        db.init_schema()
    cities = cities if cities is not None else cities_from_settings(settings)
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


def install_stop_handlers(stop: threading.Event, what: str = "the work in hand") -> bool:
    """SIGTERM/SIGINT set ``stop``: loops finish ``what`` they hold, commit, and return.

    Only the main thread may install signal handlers: elsewhere this returns False and
    the caller's owner of ``stop`` (e.g. ``urban-monitor serve all``) sets it."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: stopping after %s", signal.Signals(signum).name, what)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return True


# -- discovery --------------------------------------------------------------------------
def stac_catalogs(settings: Settings, *, backoff_s: float = 1.0) -> CatalogFactory:
    """A factory of the STAC catalog of each source (its provider's URL and limits)."""
    from monitor.adapters.stac import StacCatalog

    def catalog_for(source: SourceSettings) -> SceneCatalog:
        provider = settings.providers[source.provider]
        return StacCatalog(provider.url, timeout_s=provider.timeout_s,
                           max_retries=provider.max_retries, backoff_s=backoff_s,
                           page_size=provider.page_size)
    return catalog_for


def discovery_cycle(settings: Settings, bus: Bus, registry: SceneRegistry, *,
                    catalog_for: CatalogFactory | None = None, backoff_s: float = 1.0,
                    **options: Any) -> DiscoveryCycle:
    """Discovery over ``registry`` (a ``SceneRegistry``, e.g. the database); STAC catalogs
    from the settings unless ``catalog_for`` is given. ``options``: those of
    :class:`monitor.pipeline.discovery.DiscoveryCycle` (clock, strategy, max_workers...)."""
    from monitor.pipeline.discovery import DiscoveryCycle

    return DiscoveryCycle(settings, bus, registry,
                          catalog_for=catalog_for or stac_catalogs(settings, backoff_s=backoff_s),
                          **options)


# -- inference --------------------------------------------------------------------------
def load_models(settings: Settings) -> tuple[ChangeModel, ChangeModel]:
    """The S2 and S1 change models the settings name (onnxruntime)."""
    from monitor.adapters.onnx_model import OnnxChangeModel

    m = settings.models
    return (OnnxChangeModel.load(m.s2, threads=m.threads, tile=m.tile),
            OnnxChangeModel.load(m.s1, threads=m.threads, tile=m.tile))


def load_dual_model(settings: Settings) -> DualChangeModel | None:
    """The dual-stream S1+S2 model the settings name (``models.dual``; none: S2 alone)."""
    from monitor.adapters.onnx_model import OnnxChangeModel

    m = settings.models
    if not m.dual:
        return None
    return OnnxChangeModel.load(m.dual, threads=m.threads, tile=m.tile)


def build_worker(runtime: Runtime, *, store: StateRepository | None = None,
                 reader: SceneReader | None = None, s2_model: ChangeModel | None = None,
                 s1_model: ChangeModel | None = None,
                 dual_model: DualChangeModel | None = None,
                 publisher: StatePublisher | None = None) -> InferenceWorker:
    """The inference worker of this process: the settings' state store, rasterio reader,
    ONNX models, asset signers and change-layer publisher, unless overridden."""
    from monitor.adapters.signing import signer_for
    from monitor.adapters.vectorise import site_reports
    from monitor.domain.state import StateParams
    from monitor.pipeline.inference import InferenceWorker

    settings = runtime.settings
    if store is None:
        from monitor.adapters.state_store import StateStore

        store = StateStore(settings.state.url)
    if reader is None:
        from monitor.adapters.raster import RasterioSceneReader, asset_policies

        # Asset hrefs only where each provider is configured to point (issue 17).
        reader = RasterioSceneReader(policies=asset_policies(settings.providers))
    if s2_model is None or s1_model is None:
        loaded_s2, loaded_s1 = load_models(settings)
        s2_model, s1_model = s2_model or loaded_s2, s1_model or loaded_s1
    return InferenceWorker(
        bus=runtime.bus, registry=runtime.db, store=store, reader=reader,
        s2_model=s2_model, s1_model=s1_model, cities=runtime.cities,
        signers={name: signer for name, p in settings.providers.items()
                 if (signer := signer_for(
                     p.signing, sas_url=p.sas_url,
                     subscription_key=p.subscription_key.get_secret_value()
                     if p.subscription_key else None)) is not None},
        changes_topic=settings.bus.changes_topic, site_reporter=site_reports,
        dual_model=dual_model if dual_model is not None else load_dual_model(settings),
        state_params=StateParams.from_dict(settings.state.params),
        publisher=publisher if publisher is not None else layer_publisher(settings))


def build_inference_loop(runtime: Runtime, worker: InferenceWorker,
                         client_id: str | None = None) -> EventLoop:
    """The consume loop of a worker (group ``bus.inference_group``); a dead-lettered scene
    gets its reason in the scene registry."""
    from monitor.pipeline.inference import make_scene_handler

    b = runtime.settings.bus
    consumer = runtime.bus.consumer(
        [b.scenes_topic], group_id=b.inference_group,
        client_id=client_id or f"inference-{socket.gethostname()}-{os.getpid()}")

    def record(event: CloudEvent | None, error: BaseException) -> None:
        if event is not None and runtime.db.scene(event.id) is not None:
            runtime.db.mark_scene(event.id, "dead_lettered", str(error))

    return EventLoop(runtime.bus, consumer, make_scene_handler(worker), expected_type=SCENE_TYPE,
                     dead_letter_topic=b.dead_letter_topic, group=b.inference_group,
                     on_dead_letter=record)


def run_inference(runtime: Runtime, stop: threading.Event) -> None:
    """One inference worker until ``stop`` is set."""
    worker = build_worker(runtime)
    loop = build_inference_loop(runtime, worker)
    log.info("inference worker consuming %s as group %s", runtime.settings.bus.scenes_topic,
             runtime.settings.bus.inference_group)
    try:
        loop.run(stop)
    finally:
        loop.consumer.close()
        log.info("inference worker stopped: %s", loop.stats)


# -- alerting ---------------------------------------------------------------------------
def alert_links_base(settings: Settings) -> str:
    """Where AlertEvents link to: ``alerting.links_base_url``, else the API's address."""
    if settings.alerting.links_base_url:
        return settings.alerting.links_base_url.rstrip("/")
    host = settings.api.host
    host = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{settings.api.port}"


def build_alerting_loop(settings: Settings, bus: Bus, db: Database, *,
                        client_id: str | None = None) -> tuple[EventLoop, AlertingHandler]:
    """The alerting consume loop (topic ``bus.changes_topic``, group
    ``bus.alerting_group``) and its handler; anything a crash left in the outbox goes out
    first."""
    from monitor.pipeline.alerting import AlertingHandler
    from monitor.pipeline.outbox import publish_pending

    b = settings.bus
    bus.ensure_topics([b.changes_topic, b.alerts_topic, b.dead_letter_topic], b.partitions)
    handler = AlertingHandler(db, bus, settings=settings.alerting, alerts_topic=b.alerts_topic,
                              links_base=alert_links_base(settings))
    publish_pending(db, bus)
    consumer = bus.consumer([b.changes_topic], b.alerting_group,
                            client_id=client_id or f"{b.client_id}-alerting")
    loop = EventLoop(bus, consumer, handler, expected_type=CHANGE_TYPE,
                     dead_letter_topic=b.dead_letter_topic, group=b.alerting_group)
    return loop, handler


def run_dispatcher(settings: Settings, db: Database, stop_event: threading.Event) -> None:
    """Send due webhook deliveries every ``alerting.dispatch_interval_s`` until stopped."""
    from monitor.adapters.webhooks import WebhookSender
    from monitor.pipeline.outbox import dispatch_due

    with WebhookSender(timeout_s=settings.alerting.webhook_timeout_s,
                       allow=settings.alerting.webhook_allow_private) as sender:
        while not stop_event.is_set():
            try:
                stats = dispatch_due(db, datetime.now(UTC), sender=sender,
                                     settings=settings.alerting)
                busy = stats.delivered + stats.retried + stats.failed
            except UrbanMonitorError as exc:  # database down: keep trying, lose nothing
                log.warning("webhook dispatcher: %s", exc)
                busy = 0
            except Exception:  # noqa: BLE001 - the dispatcher thread must not die
                log.exception("webhook dispatcher: unexpected error; going on")
                busy = 0
            if not busy:
                stop_event.wait(settings.alerting.dispatch_interval_s)


def run_alerting(settings: Settings, bus: Bus, db: Database,
                 stop_event: threading.Event) -> ConsumeStats:
    """Consume ChangeEvents in the calling thread and dispatch webhooks in a second one,
    until ``stop_event`` is set; returns the loop's statistics."""
    loop, _ = build_alerting_loop(settings, bus, db)
    dispatcher = threading.Thread(target=run_dispatcher, args=(settings, db, stop_event),
                                  name="webhook-dispatcher", daemon=True)
    dispatcher.start()
    try:
        stats = loop.run(stop_event, timeout_s=0.5)
    finally:
        stop_event.set()
        loop.consumer.close()
        dispatcher.join(timeout=settings.alerting.webhook_timeout_s + 5)
    return stats


# -- products -----------------------------------------------------------------------------
def layer_store(settings: Settings) -> LayerStore:
    """The store of the change layers (COGs + STAC items): ``products.url`` or the state's."""
    from monitor.adapters.layer_store import LayerStore

    p = settings.products
    return LayerStore(p.url or settings.state.url, keep=p.keep_versions)


def layer_publisher(settings: Settings) -> LayerPublisher:
    """What writes the change layers of saved state versions, at the settings' cadence."""
    from monitor.pipeline.products import LayerPublisher
    from monitor.products.layers import LayerCadence

    p = settings.products
    return LayerPublisher(layer_store(settings), LayerCadence(
        mode=p.layers_cadence, every_versions=p.layers_every_versions))


# -- the API ----------------------------------------------------------------------------
def state_store(settings: Settings) -> StateRepository:
    """The state store the settings name (the API reads the maps from it)."""
    from monitor.adapters.state_store import StateStore

    return StateStore(settings.state.url)
