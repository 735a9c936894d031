"""The change layers of a city state: what a city's state says per pixel, as rasters that
earth-observation tools load (one COG per layer, written by ``monitor.adapters.layer_store``).

The layer set follows OPERA DIST-ALERT (status, dates, confidence, counts, last
observation), with this system's lifecycle and epoch:

======================  ======  ======  ==================================================
layer                   dtype   nodata  value
======================  ======  ======  ==================================================
status                  uint8   255     lifecycle code (:data:`STATUS_CLASSES`)
first_detection_date    uint16  0       day of the first detection
confirmation_date       uint16  0       day the change was confirmed
change_date             uint16  0       estimated day of the change (CUSUM change point);
                                        only where a change was detected (status > 0)
confidence              uint8   255     0..100, evidence relative to the confirmation level
clear_count             uint8   none    clear Sentinel-2 observations (saturates at 255)
last_clear_date         uint16  0       day of the last clear Sentinel-2 observation
======================  ======  ======  ==================================================

Days count from :data:`monitor.domain.vocabulary.DAY_EPOCH` (2014-01-01): value ``d`` is
the date ``2014-01-01 + d days``; 0 means "none" (the nodata of every date layer), as
OPERA's VEG-DIST-DATE counts days from its own epoch. The status codes are the state's
(``monitor.domain.vocabulary.Status``); the state has no low/high-confidence split of a
status, so confidence is its own layer (OPERA splits status codes by confidence instead).
Status and confidence declare 255 as nodata only so that resampled overviews and mosaics
have a fill value; every pixel of a city grid has a value.

Which versions get layers (a state version is saved per scene) is :class:`LayerCadence`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np

from monitor.domain.grid import CityGrid
from monitor.domain.state import CityState
from monitor.domain.vocabulary import DAY_EPOCH, Status, day_to_date

LAYER_SET = "change-layers"
DAY_UNIT = f"days since {DAY_EPOCH.isoformat()}"


@dataclass(frozen=True)
class ClassValue:
    value: int
    name: str
    description: str


STATUS_CLASSES: tuple[ClassValue, ...] = (
    ClassValue(int(Status.NONE), "none", "no change detected"),
    ClassValue(int(Status.FIRST), "first",
               "first detection: the change evidence crossed the first threshold"),
    ClassValue(int(Status.PROVISIONAL), "provisional",
               "provisional: evidence from repeated anomalous observations"),
    ClassValue(int(Status.CONFIRMED), "confirmed",
               "confirmed change (final): evidence above the confirmation threshold"),
    ClassValue(int(Status.RETRACTED), "retracted",
               "an unconfirmed detection that faded (evidence went back or aged out)"),
    ClassValue(int(Status.WITHDRAWN), "withdrawn",
               "a confirmed change withdrawn after a year of contrary evidence"),
)


@dataclass(frozen=True)
class LayerSpec:
    """One layer: name (asset key and file name), dtype, nodata, unit and meaning."""

    name: str
    dtype: Literal["uint8", "uint16"]
    nodata: int | None
    title: str
    description: str
    unit: str | None = None
    # GDAL overview resampling: categorical and date layers pick a pixel, never a mean
    resampling: Literal["NEAREST", "AVERAGE", "MODE"] = "NEAREST"
    classes: tuple[ClassValue, ...] = ()

    @property
    def is_date(self) -> bool:
        return self.unit == DAY_UNIT


LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("status", "uint8", 255, "Change status",
              "lifecycle status of the pixel's change (classification)", None, "MODE",
              STATUS_CLASSES),
    LayerSpec("first_detection_date", "uint16", 0, "First-detection date",
              "day the change was first detected; 0 = never", DAY_UNIT),
    LayerSpec("confirmation_date", "uint16", 0, "Confirmation date",
              "day the change was confirmed; 0 = not confirmed", DAY_UNIT),
    LayerSpec("change_date", "uint16", 0, "Estimated change date",
              "estimated day of the change: the change point of the evidence, where a "
              "change was detected (status > 0); 0 = none", DAY_UNIT),
    LayerSpec("confidence", "uint8", 255, "Confidence",
              "0-100: change evidence relative to the confirmation threshold (a confirmed "
              "pixel is at least 50, a retracted or withdrawn one at most 50)", "percent",
              "AVERAGE"),
    LayerSpec("clear_count", "uint8", None, "Clear observations",
              "number of clear Sentinel-2 observations applied to the pixel (saturates at "
              "255)", "count", "AVERAGE"),
    LayerSpec("last_clear_date", "uint16", 0, "Last clear observation",
              "day of the pixel's last clear Sentinel-2 observation (freshness); 0 = never",
              DAY_UNIT),
)
LAYER_NAMES: tuple[str, ...] = tuple(spec.name for spec in LAYERS)


def layer_spec(name: str) -> LayerSpec:
    for spec in LAYERS:
        if spec.name == name:
            return spec
    raise KeyError(f"'{name}' is not a change layer; the layers are {list(LAYER_NAMES)}")


@dataclass(frozen=True)
class LayerSet:
    """The layers of one version of a city's state, with what the catalog says of them."""

    city_id: str
    version: int
    grid: CityGrid
    arrays: dict[str, np.ndarray]
    start: date | None  # first acquisition applied to the state
    end: date | None    # latest acquisition applied: the layers are "as of" this day
    last_scene_id: str | None
    model_version: str | None
    pixels: dict[str, int] = field(default_factory=dict)  # pixel counts by status
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def item_id(self) -> str:
        return item_id_for(self.city_id, self.version)


def item_id_for(city_id: str, version: int) -> str:
    """The STAC item id of a city's layers at a state version: ``lagos-v00000042``."""
    return f"{city_id}-v{version:08d}"


def latest_acquisition_day(state: CityState) -> int | None:
    """The newest acquisition day (state days) applied to the state, any stream."""
    return max(state.last_day.values()) if state.last_day else None


def build_layers(state: CityState) -> dict[str, np.ndarray]:
    """The layer arrays of ``state`` (H, W), in :data:`LAYERS` order; values as documented
    above, equal to the state's own arrays (dates are the state's uint16 days)."""
    confidence = np.rint(np.clip(state.confidence(), 0.0, 1.0) * 100).astype(np.uint8)
    status = np.asarray(state.status, dtype=np.uint8)
    # The state keeps the start of a running evidence run on pixels not detected yet: that
    # is no estimate of a change, so the layer has a date only where a change was detected.
    change_date = np.where(status != int(Status.NONE), state.change_day, 0).astype(np.uint16)
    arrays = {
        "status": status,
        "first_detection_date": np.asarray(state.first_day, dtype=np.uint16),
        "confirmation_date": np.asarray(state.confirm_day, dtype=np.uint16),
        "change_date": change_date,
        "confidence": confidence,
        "clear_count": np.asarray(state.s2_count, dtype=np.uint8),
        "last_clear_date": np.asarray(state.last_clear_day, dtype=np.uint16),
    }
    return {name: np.ascontiguousarray(arrays[name]) for name in LAYER_NAMES}


def layer_set(city_id: str, state: CityState) -> LayerSet:
    """The layers of ``state`` with their catalog metadata."""
    first = min(state.first_stream_day.values()) if state.first_stream_day else None
    last = latest_acquisition_day(state)
    summary = state.summary()
    return LayerSet(
        city_id=city_id, version=int(state.version), grid=state.grid,
        arrays=build_layers(state),
        start=day_to_date(first) if first else None,
        end=day_to_date(last) if last else None,
        last_scene_id=state.last_scene_id, model_version=state.last_model_version,
        pixels={s.label: int(summary.get(s.label, 0)) for s in Status})


Cadence = Literal["version", "day", "on-demand"]


@dataclass(frozen=True)
class PublishedMark:
    """What was published last for a city: its state version and latest acquisition day."""

    version: int
    acquisition_day: int | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "acquisition_day": self.acquisition_day}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PublishedMark:
        day = data.get("acquisition_day")
        return cls(version=int(data["version"]), acquisition_day=None if day is None else int(day))


@dataclass(frozen=True)
class LayerCadence:
    """Which saved state versions get layers (the worker saves one version per scene).

    - ``version``: every saved version (7 COGs per scene);
    - ``day`` (default): the first version whose latest acquisition is on a later day than
      the last published layers' -- at most one layer set per city and acquisition day
      (S2 tiles of one pass, S1 and S2 of one day), lagging the state by at most the other
      scenes of its latest day; ``every_versions`` > 0 also publishes once that many
      versions went by without layers;
    - ``on-demand``: only when asked (``urban-monitor products publish``, ``export stac``).
    """

    mode: Cadence = "day"
    every_versions: int = 0

    def due(self, state: CityState, last: PublishedMark | None) -> bool:
        if self.mode == "on-demand":
            return False
        if last is None:
            return True
        if int(state.version) <= last.version:
            return False
        if self.mode == "version":
            return True
        if self.every_versions and int(state.version) - last.version >= self.every_versions:
            return True
        day = latest_acquisition_day(state)
        return day is not None and (last.acquisition_day is None or day > last.acquisition_day)
