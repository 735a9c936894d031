"""Every error Urban Monitor raises on purpose.

Each error says what failed, for which thing (file, key, city, scene, event id) and what
to do about it. Adapters translate vendor exceptions (kafka, rasterio, sqlalchemy,
pystac-client, onnxruntime) into these, so callers never see a vendor type.
"""

from __future__ import annotations


class UrbanMonitorError(Exception):
    """Base class. ``what`` names the failure, ``hint`` says what to do."""

    def __init__(self, what: str, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(what if not hint else f"{what}. What to do: {hint}")


class ConfigError(UrbanMonitorError):
    """A configuration file or environment override is invalid."""

    def __init__(self, source: str, key: str | None, problem: str, hint: str) -> None:
        self.source = source
        self.key = key
        where = f"{source}" + (f", key '{key}'" if key else "")
        super().__init__(f"invalid configuration in {where}: {problem}", hint)


class GeometryError(UrbanMonitorError):
    """An area of interest or footprint is not a usable geometry."""


class EventError(UrbanMonitorError):
    """An event does not follow its contract (CloudEvents 1.0 + JSON Schema)."""

    def __init__(self, event_id: str | None, problem: str, hint: str | None = None) -> None:
        self.event_id = event_id
        super().__init__(
            f"malformed event {event_id or '<no id>'}: {problem}",
            hint or "fix the producer; the event was sent to the dead-letter topic",
        )


class BusError(UrbanMonitorError):
    """Publishing to or consuming from the event bus failed."""


class EventTooLargeError(UrbanMonitorError):
    """An event is larger than the bus accepts: retrying cannot help, so the record that
    produced it is dead-lettered with this reason (and the partition moves on)."""


class DatabaseError(UrbanMonitorError):
    """The database could not be reached or refused an operation."""


class AlertError(UrbanMonitorError):
    """An alert or a change region cannot be turned into an alert (bad geometry, bad data)."""


class WebhookError(UrbanMonitorError):
    """A webhook subscription is invalid or a delivery could not be made."""


class RequestError(UrbanMonitorError):
    """An API request has a bad parameter (bbox, datetime, limit, body)."""

    def __init__(self, parameter: str, problem: str, hint: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(f"parameter '{parameter}': {problem}", hint)


class CatalogError(UrbanMonitorError):
    """A STAC API could not be searched (after retries) or answered garbage."""


class ItemError(UrbanMonitorError):
    """A STAC item cannot become a scene (missing asset, bad geometry, no datetime)."""

    def __init__(self, item_id: str, problem: str, hint: str | None = None) -> None:
        self.item_id = item_id
        super().__init__(
            f"STAC item {item_id}: {problem}",
            hint or "the item was skipped and recorded; the provider may republish it",
        )


class SceneReadError(UrbanMonitorError):
    """A scene's raster assets could not be read onto the city grid."""

    def __init__(self, scene_id: str, problem: str, hint: str | None = None) -> None:
        self.scene_id = scene_id
        super().__init__(
            f"scene {scene_id}: {problem}",
            hint or "the scene was skipped with this reason in the scene registry",
        )


class ModelError(UrbanMonitorError):
    """A change model is missing, does not match its card, or failed to run."""


class StateError(UrbanMonitorError):
    """A city's change state could not be loaded or persisted."""

    def __init__(self, city_id: str, problem: str, hint: str | None = None) -> None:
        self.city_id = city_id
        super().__init__(
            f"change state of city {city_id}: {problem}",
            hint or "the previous version of the state is intact; retry the scene",
        )


class ProductError(UrbanMonitorError):
    """A city's change layers (COGs, STAC items) could not be written or read."""

    def __init__(self, city_id: str, problem: str, hint: str | None = None) -> None:
        self.city_id = city_id
        super().__init__(f"change layers of city {city_id}: {problem}",
                         hint or "the city state is intact; publish the layers again")


class ServiceError(UrbanMonitorError):
    """An external service (Kafka, PostgreSQL, STAC server) did not start or answer."""


class SyntheticArchiveError(UrbanMonitorError):
    """A synthetic city archive could not be generated, written or loaded."""


class ObservationError(UrbanMonitorError):
    """An observation given to a city's change state does not fit it (shape, band count,
    modality, orbit, date). The state is left untouched."""

    def __init__(self, scene_id: str, problem: str, hint: str | None = None) -> None:
        self.scene_id = scene_id
        super().__init__(
            f"observation of scene {scene_id}: {problem}",
            hint or "fix how the scene is read onto the city grid; the state was not changed",
        )


class ScoringError(UrbanMonitorError):
    """A change map and its ground truth cannot be compared (shapes, period, pixel size)."""


class RenderError(UrbanMonitorError):
    """A map, legend, chart or report could not be rendered from the data given."""


class StreamError(UrbanMonitorError):
    """A real-imagery scene stream (or its source data) could not be built, read or scored."""
