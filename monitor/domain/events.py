"""Event contracts: CloudEvents 1.0 JSON envelopes with versioned, schema-checked data.

Ids are deterministic (a hash of what the event is about), so every consumer can
de-duplicate: the same scene discovered twice, or the same change recomputed after a
redelivery, yields the same id. The JSON Schemas in ``monitor/schemas/`` are generated
from these models (``urban-monitor events schemas``) and a test keeps them in step.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from monitor.domain.vocabulary import AlertStatus
from monitor.errors import EventError

SPEC_VERSION: Literal["1.0"] = "1.0"
SCENE_TYPE = "org.urbanmonitor.scene.discovered.v1"
# v2 (delta: the sites a scene moved). v1 (every region of the city) is retired.
CHANGE_TYPE = "org.urbanmonitor.change.detected.v2"
ALERT_TYPE = "org.urbanmonitor.alert.updated.v1"
DEAD_LETTER_TYPE = "org.urbanmonitor.deadletter.v1"
COVERAGE_GAP_TYPE = "org.urbanmonitor.coverage.gap.v1"
SCHEMA_BASE = "https://urban-monitor.github.io/schemas/"


def deterministic_id(*parts: object) -> str:
    """A stable id: sha256 of the parts joined by '|', first 32 hex digits."""
    text = "|".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Asset(_Data):
    href: str = Field(description="URL or path of the asset (COG)")
    key: str = Field(description="the provider's asset key")
    type: str | None = None


class SceneData(_Data):
    """A new acquisition over a city, ready to be read by an inference worker."""

    city_id: str
    provider: str
    stac_api: str = Field(description="root URL of the STAC API the item came from")
    collection: str
    item_id: str
    modality: Literal["s1", "s2"]
    acquired: datetime = Field(description="acquisition time (item datetime), UTC")
    published: datetime | None = Field(default=None, description="when the provider listed it")
    bbox: list[float] = Field(min_length=4, max_length=4)
    epsg: int | None = Field(default=None, description="native CRS of the assets, if known")
    assets: dict[str, Asset] = Field(description="canonical band name -> asset")
    platform: str | None = None
    cloud_cover: float | None = Field(default=None, description="scene-level %, S2 only")
    processing_baseline: str | None = None
    boa_offset: float = Field(default=0.0, description="value to subtract from S2 DN before /10000")
    orbit_state: Literal["ascending", "descending"] | None = None
    relative_orbit: int | None = None
    instrument_mode: str | None = None
    polarizations: list[str] = Field(default_factory=list)
    backscatter_unit: Literal["gamma0_linear", "sigma0_linear", "dn"] | None = None


class ChangeSite(_Data):
    """One change site of a city state, as it stands after the scene (``monitor.domain.sites``).

    Only sites the scene moved materially are sent: a new site, a status change, new dates,
    a footprint change beyond the alerting step, or a confidence move of at least the step.
    """

    site_id: str = Field(description="stable within the city (a per-city counter): "
                                     "the alert id is derived from it")
    status: AlertStatus
    geometry: dict[str, Any] | None = Field(
        default=None, description="GeoJSON (Multi)Polygon, EPSG:4326, of the footprint: the "
                                  "confirmed pixels of a confirmed site, else its active "
                                  "pixels; null when none is left (retracted/withdrawn)")
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4,
                                     description="lon/lat bounds of the footprint")
    n_pixels: int = Field(ge=0)
    area_m2: float = Field(ge=0)
    first_detected: date
    confirmed: date | None = None
    closed: date | None = Field(default=None, description="retracted or withdrawn on")
    change_date: date | None = Field(default=None,
                                     description="estimated time of change: the median of "
                                                 "its pixels' CUSUM change points")
    confidence: float = Field(ge=0, le=1)


class ChangeData(_Data):
    """What folding one scene into a city's change state changed (ChangeEvent v2).

    A delta: ``sites`` holds only the sites whose status, footprint, dates or confidence
    moved; a scene that changes nothing yields an event with no sites (a few hundred bytes).
    """

    city_id: str
    scene_event_id: str
    scene_ids: list[str] = Field(description="STAC item ids of the scene(s) applied")
    modality: Literal["s1", "s2"]
    acquired: datetime
    model_version: str
    state_version: int = Field(ge=0)
    valid_fraction: float = Field(ge=0, le=1)
    pixels: dict[str, int] = Field(description="pixel counts by status after the update")
    transitions: dict[str, int] = Field(
        default_factory=dict, description="pixels whose status changed with this scene, by "
                                          "'old->new' status")
    sites: list[ChangeSite] = Field(default_factory=list)


class AlertLink(_Data):
    """A web link (RFC 8288 style, as OGC API and STAC write them)."""

    href: str
    rel: str = Field(description="'alternate' (the OGC API feature), 'evidence' (chips + "
                                 "timeline, JSON), 'preview' (a chip, PNG)")
    type: str
    title: str | None = None


class AlertData(_Data):
    """An urban change alert (a site), as recorded and pushed to subscribers."""

    alert_id: str
    city_id: str
    status: AlertStatus
    revision: int = Field(ge=1)
    geometry: dict[str, Any]
    area_m2: float = Field(ge=0)
    first_detected: date
    confirmed: date | None = None
    retracted: date | None = None
    change_date: date | None = None
    confidence: float = Field(ge=0, le=1)
    model_version: str
    scene_ids: list[str]
    site_id: str | None = Field(default=None, description="the state's site this alert is")
    links: list[AlertLink] = Field(
        default_factory=list, description="where to verify this revision: the OGC API "
        "feature, the evidence (before/after chips and the site's observation timeline with "
        "p(change) and evidence per scene) and the two chips, on the API "
        "(alerting.links_base_url)")


class DeadLetterData(_Data):
    reason: str
    error_type: str
    original_topic: str
    original_key: str | None = None
    original_value: str = Field(description="the failed message, as text (utf-8, replaced)")
    original_event_id: str | None = None
    consumer_group: str | None = None
    failed_at: datetime


class GapAcquisition(_Data):
    """One expected acquisition of a coverage gap (a unit's pass over the city)."""

    date: date
    expected_at: datetime = Field(description="the orbit's usual acquisition time that day")
    unit: str = Field(description="e.g. sentinel-2b")
    orbit: str = Field(description="relative orbit (R116), or the UTC time of day of the "
                       "pass (t17:53) when the source does not say")


class CoverageGapData(_Data):
    """A coverage gap of one source over a city opened or closed (``monitor.domain.coverage``):
    expected acquisitions the source did not list within the grace period."""

    city_id: str
    source: str = Field(description="the configured source (provider + collection)")
    collection: str
    state: Literal["open", "closed"]
    reason: str
    gap_id: str = Field(description="stable for the gap: open and closed events share it")
    first_expected: datetime
    last_expected: datetime
    missing: list[GapAcquisition] = Field(description="the gap's acquisitions not listed")
    opened_at: datetime = Field(description="when the first one passed the grace period")
    closed_at: datetime | None = None
    resumed_item_ids: list[str] = Field(default_factory=list, description="the listed "
                                        "acquisition that closed the gap")
    grace_hours: float


DATA_MODELS: dict[str, type[_Data]] = {
    SCENE_TYPE: SceneData,
    CHANGE_TYPE: ChangeData,
    ALERT_TYPE: AlertData,
    DEAD_LETTER_TYPE: DeadLetterData,
    COVERAGE_GAP_TYPE: CoverageGapData,
}
SCHEMA_NAMES = {
    SCENE_TYPE: "scene-event.v1",
    CHANGE_TYPE: "change-event.v2",
    ALERT_TYPE: "alert-event.v1",
    DEAD_LETTER_TYPE: "dead-letter-event.v1",
    COVERAGE_GAP_TYPE: "coverage-gap-event.v1",
}


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 structured-mode JSON event."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str
    time: datetime
    subject: str = Field(min_length=1, description="the city id")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    data: SceneData | ChangeData | AlertData | DeadLetterData | CoverageGapData

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")

    @property
    def city_id(self) -> str:
        return self.subject


EventData = SceneData | ChangeData | AlertData | DeadLetterData | CoverageGapData


def _envelope(event_id: str, source: str, data: EventData, subject: str,
              time: datetime | None = None) -> CloudEvent:
    event_type = next(t for t, m in DATA_MODELS.items() if isinstance(data, m))
    return CloudEvent(
        id=event_id, source=source, type=event_type, time=time or utc_now(), subject=subject,
        dataschema=SCHEMA_BASE + SCHEMA_NAMES[event_type] + ".json", data=data,
    )


def scene_event(data: SceneData, source: str = "urban-monitor/scheduler") -> CloudEvent:
    event_id = deterministic_id("scene", data.city_id, data.collection, data.item_id)
    return _envelope(event_id, source, data, data.city_id)


def change_event(data: ChangeData, source: str = "urban-monitor/inference") -> CloudEvent:
    event_id = deterministic_id("change", data.city_id, data.scene_event_id, data.model_version)
    return _envelope(event_id, source, data, data.city_id)


def alert_event(data: AlertData, source: str = "urban-monitor/alerting") -> CloudEvent:
    event_id = deterministic_id("alert", data.alert_id, data.revision)
    return _envelope(event_id, source, data, data.city_id)


def dead_letter_event(data: DeadLetterData, subject: str | None,
                      source: str = "urban-monitor/dead-letter") -> CloudEvent:
    event_id = deterministic_id("dead", data.original_topic, data.original_value, data.reason)
    return _envelope(event_id, source, data, subject or "unknown", time=data.failed_at)


def coverage_gap_event(data: CoverageGapData, source: str = "urban-monitor/coverage"
                       ) -> CloudEvent:
    event_id = deterministic_id("coverage-gap", data.gap_id, data.state)
    return _envelope(event_id, source, data, data.city_id,
                     time=data.closed_at if data.state == "closed" and data.closed_at
                     else data.opened_at)


def parse_event(raw: bytes | str, expected_type: str | None = None) -> CloudEvent:
    """Parse and validate an event. Raises :class:`EventError` naming the event and problem."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(None, f"not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise EventError(None, f"top level is a {type(obj).__name__}, not a JSON object")
    event_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    if obj.get("specversion") != SPEC_VERSION:
        raise EventError(event_id, f"specversion is {obj.get('specversion')!r}, expected '1.0'")
    event_type = obj.get("type")
    if expected_type is not None and event_type != expected_type:
        raise EventError(event_id, f"type is {event_type!r}, this consumer expects {expected_type!r}")
    model = DATA_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise EventError(event_id, f"unknown event type {event_type!r}; known: {sorted(DATA_MODELS)}")
    try:
        data = model.model_validate(obj.get("data"))
        envelope = {k: v for k, v in obj.items() if k != "data"}
        return CloudEvent.model_validate({**envelope, "data": data})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise EventError(event_id, f"field '{loc}': {first['msg']}{more}") from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each event type: the CloudEvents envelope with its typed ``data``."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, model in DATA_MODELS.items():
        data_schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs = data_schema.pop("$defs", {})
        name = SCHEMA_NAMES[event_type]
        schemas[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_BASE + name + ".json",
            "title": f"{event_type} (CloudEvents 1.0, structured JSON)",
            "type": "object",
            "required": ["specversion", "id", "source", "type", "time", "subject", "data"],
            "additionalProperties": False,
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "minLength": 1,
                       "description": "deterministic: the same fact always has the same id"},
                "source": {"type": "string", "minLength": 1},
                "type": {"const": event_type},
                "time": {"type": "string", "format": "date-time"},
                "subject": {"type": "string", "minLength": 1, "description": "the city id"},
                "datacontenttype": {"const": "application/json"},
                "dataschema": {"type": "string"},
                "data": {"$ref": "#/$defs/Data"},
            },
            "$defs": {**defs, "Data": data_schema},
        }
    return schemas


def as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value
