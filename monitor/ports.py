"""Ports: the small interfaces that the pipeline steps depend on.

Every collaborator a pipeline step uses is one of these ``Protocol`` s; the steps never
see a concrete adapter. Adapters in ``monitor.adapters`` implement them for one technology
each (Kafka or the in-process bus, rasterio, onnxruntime, fsspec, SQL, pystac-client), the
composition root (``monitor.pipeline.runtime``) picks them from the settings, and tests
hand the steps fakes (``tests/unit/fakes.py``) or run contract suites against every
adapter. Values that cross a port are plain data defined here (:class:`Message`,
:class:`SceneRaster`) or in ``monitor.domain``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # annotations only: importing the ports stays cheap (no numba)
    from monitor.domain.events import ChangeSite, SceneData
    from monitor.domain.grid import CityGrid
    from monitor.domain.records import (
        AlertPage,
        AlertQuery,
        AlertRevision,
        Delivery,
        RegisteredCity,
        RegisteredScene,
        SkippedItem,
        StoredAlert,
        Subscription,
        Watermark,
    )
    from monitor.domain.sites import SiteSummary
    from monitor.domain.state import CityState
    from monitor.products.layers import LayerSet, PublishedMark


# -- values that cross the ports ------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """One record read from the bus."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes


@dataclass(frozen=True)
class SceneRaster:
    """A scene on the city grid: values (C, H, W) float32, a valid mask and band names."""

    values: np.ndarray
    valid: np.ndarray
    bands: tuple[str, ...]

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0


# -- the bus --------------------------------------------------------------------------
@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group. Offsets are committed only after processing."""

    def poll(self, timeout_s: float = 1.0, max_records: int = 100) -> list[Message]:
        """Records from the assigned partitions, in partition order; [] on timeout."""
        ...

    def commit(self, message: Message) -> None:
        """Mark ``message`` (and everything before it on its partition) as processed."""
        ...

    def rewind(self, message: Message) -> None:
        """Deliver ``message`` again on the next poll (processing failed, will retry)."""
        ...

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns now."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    """Publish events keyed by city id (one city -> one partition -> ordered) and consume."""

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Durably hand over a record (raises BusError if it could not be acknowledged)."""
        ...

    def publish_many(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        """Hand over (key, value) records in order, acknowledged together; how many."""
        ...

    def flush(self, timeout_s: float = 30.0) -> None: ...

    def ensure_topics(self, topics: Iterable[str], partitions: int) -> None: ...

    def consumer(self, topics: Sequence[str], group_id: str, *,
                 client_id: str | None = None) -> Consumer: ...

    def close(self) -> None: ...


# -- discovery --------------------------------------------------------------------------
class SceneCatalog(Protocol):
    """One STAC API (``monitor.adapters.stac.StacCatalog``)."""

    @property
    def requests(self) -> int:
        """HTTP requests issued so far (for the cycle reports)."""
        ...

    def search(self, collection: str, *, intersects: Mapping[str, Any] | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               start: datetime | None = None, end: datetime | None = None,
               query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of ``collection`` matching the filters (raises CatalogError)."""
        ...


class SceneRegistry(Protocol):
    """The durable record of every scene (discovered -> published -> processing ->
    processed | skipped | dead_lettered), the per-source watermarks and skipped items."""

    def register_scene(self, scene_id: str, *, city_id: str, source: str, provider: str,
                       collection: str, item_id: str, modality: str, acquired: datetime,
                       event_json: str) -> bool:
        """Record a discovered scene; False if (city, collection, item) is already known."""
        ...

    def known_item_ids(self, city_id: str, collection: str,
                       item_ids: Sequence[str]) -> set[str]: ...

    def mark_scene(self, scene_id: str, status: str, reason: str | None = None) -> None: ...

    def scene(self, scene_id: str) -> RegisteredScene | None: ...

    def scenes(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               limit: int | None = None) -> list[RegisteredScene]:
        """Scenes in acquisition order."""
        ...

    def scene_counts(self, city_id: str | None = None) -> dict[str, int]: ...

    def watermark(self, city_id: str, source: str) -> Watermark | None: ...

    def set_watermark(self, city_id: str, source: str, *, last_acquired: datetime | None,
                      polled_at: datetime, error: str | None = None) -> None: ...

    def record_skipped_item(self, city_id: str, collection: str, item_id: str,
                            reason: str) -> bool:
        """True the first time an item is skipped (so the warning is logged once)."""
        ...

    def skipped_items(self, city_id: str | None = None) -> list[SkippedItem]: ...


class CityRepository(Protocol):
    """The cities the database knows (registered by every process at start)."""

    def upsert_city(self, city_id: str, name: str, aoi_geojson: dict[str, Any],
                    grid: dict[str, Any], country: str = "",
                    population: dict[int, float] | None = None) -> None: ...

    def cities(self) -> list[RegisteredCity]: ...

    def city(self, city_id: str) -> RegisteredCity | None: ...


# -- inference --------------------------------------------------------------------------
class SceneSigner(Protocol):
    """Signs a scene's asset hrefs right before they are opened (tokens expire, so events
    carry unsigned hrefs), e.g. Planetary Computer SAS tokens."""

    def sign_scene(self, scene: SceneData) -> SceneData: ...


class SceneReader(Protocol):
    """Reads a scene's assets onto a city grid (``monitor.adapters.raster``)."""

    def read(self, scene: SceneData, grid: CityGrid) -> SceneRaster:
        """Values and valid mask on ``grid`` (raises SceneReadError for a bad asset)."""
        ...


class ModelIdentity(Protocol):
    @property
    def id(self) -> str:
        """Stable identifier for events: ``name@version+sha8``."""
        ...


class ChangeModel(Protocol):
    """A single-modality change model (``monitor.adapters.onnx_model.OnnxChangeModel``)."""

    @property
    def info(self) -> ModelIdentity: ...

    def predict(self, reference: np.ndarray, observation: np.ndarray,
                valid: np.ndarray | None = None, needed: np.ndarray | None = None
                ) -> np.ndarray:
        """p(change) (H, W) float32 in runtime units; NaN where ``valid`` is False. With
        ``needed``, only those pixels must be right (the rest may be NaN: a model may skip
        the windows without a needed pixel)."""
        ...


class DualChangeModel(Protocol):
    """The dual-stream S1+S2 change model (``OnnxChangeModel`` of ``change_dual``)."""

    @property
    def info(self) -> ModelIdentity: ...

    def predict_dual(self, s2_reference: np.ndarray, s2_observation: np.ndarray,
                     s1_reference: np.ndarray, s1_observation: np.ndarray,
                     valid: np.ndarray | None = None, s1_valid: np.ndarray | None = None
                     ) -> np.ndarray:
        """p(change) (H, W) of an S2 observation with its radar context (an orbit's
        reference and current 3-month means of VV, scaled dB). ``s1_valid``: where the
        radar inputs are usable (default ``valid``); elsewhere they are neutral."""
        ...


class StateRepository(Protocol):
    """Versioned, atomic storage of city states (``monitor.adapters.state_store``)."""

    def latest_version(self, city_id: str) -> int | None: ...

    def load(self, city_id: str) -> CityState | None:
        """The latest version, or None before the city's first scene."""
        ...

    def save(self, city_id: str, state: CityState) -> int:
        """Persist a new version atomically (version, then pointer); returns its number."""
        ...


class LayerRepository(Protocol):
    """Where the change layers (COGs + STAC items) of city states are written
    (``monitor.adapters.layer_store.LayerStore``)."""

    def write(self, layers: LayerSet) -> dict[str, Any]:
        """Write one layer set; returns its STAC item."""
        ...

    def last_published(self, city_id: str) -> PublishedMark | None: ...


class StatePublisher(Protocol):
    """Called after a state version is saved: writes its derived products when due
    (``monitor.pipeline.products.LayerPublisher``); never raises for a failed write."""

    def state_saved(self, city_id: str, state: CityState) -> bool: ...


class SiteReporter(Protocol):
    """Turns the sites an update moved into the ChangeSites of its ChangeEvent, tracing
    their footprints from the state (``adapters.vectorise.site_reports``)."""

    def __call__(self, state: CityState, sites: Sequence[SiteSummary]) -> list[ChangeSite]: ...


# -- alerting -------------------------------------------------------------------------
class AlertRepository(Protocol):
    """Alerts (one row per site, its latest revision) and the ChangeEvents folded into them.

    ``save_alert_changes`` writes revisions, their outbox rows and the folded ChangeEvent
    in ONE transaction (the outbox pattern)."""

    def get_alert(self, alert_id: str) -> StoredAlert | None: ...

    def alerts_by_id(self, alert_ids: Sequence[str]) -> dict[str, StoredAlert]:
        """The alerts with these ids (missing ids absent): what a ChangeEvent's sites concern."""
        ...

    def alerts(self, *, city_id: str | None = None, statuses: Sequence[str] | None = None,
               bbox: tuple[float, float, float, float] | None = None,
               updated_after: datetime | None = None, limit: int | None = 100,
               offset: int = 0, detected_from: date | None = None,
               detected_to: date | None = None, updated_since: datetime | None = None,
               order_by_updated: bool = False) -> list[StoredAlert]: ...

    def count_alerts(self, *, city_id: str | None = None,
                     statuses: Sequence[str] | None = None,
                     bbox: tuple[float, float, float, float] | None = None,
                     detected_from: date | None = None,
                     detected_to: date | None = None) -> int: ...

    def find_alerts(self, query: AlertQuery, *, limit: int, offset: int = 0) -> AlertPage:
        """One page of the alerts matching ``query`` (filters, exact bbox intersection,
        paging and the total count done by the repository)."""
        ...

    def change_folded(self, event_id: str) -> bool: ...

    def save_alert_changes(self, alerts: Sequence[StoredAlert],
                           deliveries: Sequence[Delivery],
                           folded: tuple[str, str] | None = None,
                           moved_by: Sequence[str] = ()) -> int: ...

    def alert_revision(self, alert_id: str, revision: int) -> AlertRevision | None:
        """One revision as it was made (every revision is kept, with the scenes that
        made it)."""
        ...


class SubscriptionRepository(Protocol):
    """Webhook subscriptions."""

    def add_subscription(self, subscription: Subscription) -> Subscription: ...

    def subscription(self, subscription_id: str) -> Subscription | None: ...

    def subscriptions(self, *, active_only: bool = True, limit: int | None = None,
                      offset: int = 0) -> list[Subscription]: ...

    def deactivate_subscription(self, subscription_id: str) -> bool: ...


class DeliveryOutbox(Protocol):
    """The outbox: one delivery per (subscription or bus topic, AlertEvent), retried."""

    def due_deliveries(self, now: datetime, *, limit: int = 100,
                       channel_prefix: str | None = None,
                       exclude_prefix: str | None = None) -> list[Delivery]: ...

    def claim_delivery(self, delivery_id: int, seen_next_attempt_at: datetime,
                       lease_until: datetime) -> bool: ...

    def finish_delivery(self, delivery_id: int, *, status: str, attempted_at: datetime,
                        next_attempt_at: datetime | None = None,
                        status_code: int | None = None, error: str | None = None) -> None: ...

    def mark_delivered(self, delivery_ids: Sequence[int], *, attempted_at: datetime) -> int:
        """Mark many rows delivered at once (bus rows after the bus flushed them)."""
        ...

    def deliveries(self, *, subscription_id: str | None = None, alert_id: str | None = None,
                   statuses: Sequence[str] | None = None, limit: int | None = 100,
                   offset: int = 0) -> list[Delivery]: ...


class WebhookOutcome(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def status_code(self) -> int | None: ...

    @property
    def error(self) -> str | None: ...


class WebhookClient(Protocol):
    """Sends one signed webhook POST (``monitor.adapters.webhooks.WebhookSender``); network
    and HTTP failures are outcomes, never exceptions."""

    def send(self, url: str, body: bytes, *, secret: str, event_id: str, delivery_id: int,
             timestamp: int) -> WebhookOutcome: ...

    def close(self) -> None: ...


class AlertingStore(AlertRepository, SubscriptionRepository, DeliveryOutbox, Protocol):
    """What the alerting step writes through: alerts, the subscriptions that decide who is
    notified, and the outbox their notifications go into."""
