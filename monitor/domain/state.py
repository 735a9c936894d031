"""The per-city change state: references, evidence and alert lifecycle, pixel by pixel.

Pure numpy. One :class:`CityState` per city holds, for every pixel of the city's fixed
grid, everything the system needs to decide about change *without re-reading history*:

* the reference (baseline) of each modality: S2 reflectance in the six model bands, and per
  Sentinel-1 relative orbit a slow reference mean and a ~3-month "current" running mean of
  VV backscatter (the S1 models compare 3-month means of the same orbit);
* the change evidence: a one-sided CUSUM of calibrated log-likelihood ratios,
  ``S <- clip(S + w_m * LLR_m(p), 0, cap)``, where ``p`` is the model's p(change) for the
  new observation and ``LLR_m`` the per-modality calibrated mapping (see STATE.md);
* the lifecycle status (none, first, provisional, confirmed, retracted), the first-detection
  day, the confirmation day, the estimated day of change (when the current CUSUM run left
  zero), and observation counts.

An update (:meth:`CityState.apply`) touches each pixel a constant number of times: it costs
O(pixels of the grid), never O(history). Dates are ``uint16`` days since 2014-01-01
(0 = none); see :func:`date_to_day` and :func:`day_to_date`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from typing import Any, Literal

import numba
import numpy as np

from monitor.domain.grid import CityGrid
from monitor.domain.sites import (
    SiteRules,
    SiteSummary,
    table_from_json,
    table_to_json,
    update_sites,
)

# The day epoch, its conversions and the status codes are defined once, in the
# vocabulary; importing them here keeps ``monitor.domain.state.Status`` (etc.) working.
from monitor.domain.vocabulary import DAY_EPOCH as EPOCH  # noqa: F401
from monitor.domain.vocabulary import Status, date_to_day, day_to_date
from monitor.errors import ConfigError, ObservationError, StateError

S2_N_BANDS = 6
STATE_FORMAT_VERSION = 2  # 2: per-pixel site ids and the site table

Modality = Literal["s1", "s2"]


STATUS_NONE = int(Status.NONE)
STATUS_FIRST = int(Status.FIRST)
STATUS_PROVISIONAL = int(Status.PROVISIONAL)
STATUS_CONFIRMED = int(Status.CONFIRMED)
STATUS_RETRACTED = int(Status.RETRACTED)
STATUS_WITHDRAWN = int(Status.WITHDRAWN)
_N_STATUS = len(Status)

# The ``run`` byte: bits 0-5 count the anomalous observations (LLR > 0) of the current
# CUSUM run (saturating at 63); bit 6 is set when S2 contributed one, bit 7 when S1 did.
_RUN_COUNT_MASK = 0x3F
RUN_S2_BIT = 0x40
RUN_S1_BIT = 0x80
_RUN_FLAGS_MASK = RUN_S2_BIT | RUN_S1_BIT
# LLR lookup tables: p(change) is quantised to this many bins (finer than any model's
# calibration) so that an update needs no logarithm.
_LUT_SIZE = 4096
_P_EPS = 1e-4
# Fixed-point storage (uint16) of the continuous per-pixel quantities: predictable
# precision, half the bytes of float32, and usable from the compiled update kernel.
EVIDENCE_SCALE = 2048.0  # evidence 0..31.99 in steps of 0.0005
S2_SCALE = 50000.0  # reflectance 0..1.31 in steps of 2e-5
S1_SCALE = 65535.0  # scaled dB 0..1 in steps of 1.5e-5 (5e-4 dB)


@dataclass(frozen=True)
class StateParams:
    """Every tunable of the change state. Defaults: see STATE.md for where they came from.

    LLR mapping per modality: ``LLR = clip(slope * logit(p) + offset, -llr_clip, llr_clip)``,
    the log-likelihood ratio change/no-change of a model output ``p``, fitted by logistic
    calibration on data with truth (``monitor.domain.calibration.fit_llr``). ``weight``
    discounts a modality whose successive outputs are not independent (S1 running means).
    """

    # Calibrated on the synthetic archive var/synthetic/state-calib (3 km, 2019-2021, seed 7,
    # 14 construction sites, cropland/vegetation/seasonal-water confusers) with the shipped
    # all-city ONNX change models (change_s2@1.0.0+a2c28a88, change_s1@1.0.0+3e2447d9):
    #   python -m models.calibrate_state --exact      (var/calibration/*/state_calibration.json)
    # LLR mapping: balanced logistic fit of truth on logit(p); S1 weight and h_confirm: best
    # object F1 of an exact replay over s1_weight {0, .25, .5} x h_confirm {7, 9}:
    #   s1_weight 0 / h 9: object F1 0.52, 11 of 14 sites, 17 false alert regions (chosen);
    #   s1_weight .25 / h 9: object F1 0.41, 12 of 14 sites, 24 false regions.
    # With these S1 models the radar evidence costs more false alerts than it finds sites,
    # so it gets no weight: S1 scenes still keep the per-orbit references up to date, and
    # the worker skips running the S1 model while the weight is 0. The real OPERA RTC series
    # (no construction) stays free of any alert at S1 weight 0.25 and 0.5 as well.
    # Re-run it whenever the change models are retrained (see STATE.md).
    s2_llr_slope: float = 1.5
    s2_llr_offset: float = 5.8
    s1_llr_slope: float = 0.681
    s1_llr_offset: float = 0.983
    s2_weight: float = 1.0
    s1_weight: float = 0.0
    llr_clip: float = 3.0
    # CUSUM thresholds on the evidence (natural-log units) and its cap. h_first and
    # h_provisional: RADD-like early warnings (one and two strong observations);
    # h_confirm: calibrated (above); the cap (h_confirm + 3) bounds how long a confirmed
    # or open alert takes to drain.
    h_first: float = 2.0
    h_provisional: float = 4.0
    h_confirm: float = 9.0
    evidence_cap: float = 12.0
    # Anomalous observations in the current run: promote to provisional / needed to confirm.
    n_provisional: int = 2
    n_confirm: int = 3
    # ... and the run must have lasted this long (days since it left zero): seasonal
    # excursions (harvests, floods) are shorter than a construction site is bare. 60/120
    # helped the classical baselines (fewer cropland alerts) but not the learned models,
    # whose calibration chose 0 (no extra delay).
    min_confirm_days: int = 0
    # A first/provisional alert must confirm within this many days or it is retracted.
    window_days: int = 180
    # A confirmed pixel is retracted only after its evidence has drained to zero and at
    # least this many days have passed since confirmation (0 disables un-confirming).
    unconfirm_after_days: int = 365
    # A scene older than the last applied scene of its stream by more than this is 'late'.
    late_after_days: int = 30
    # The baseline period: the first ``baseline_days`` of each stream (S2, each S1 orbit),
    # counted from its first applied scene, only build the references; no model is run and
    # no evidence accrues, so nothing alerts from warm-up. ``urban-monitor run`` backfills
    # this much archive before its --start (90 days: ~18 S2 passes, 6-9 of them clear per
    # pixel; ~8 S1 passes per orbit, what the S1 reference needs).
    baseline_days: int = 90
    # Sites (monitor.domain.sites): active pixels within ``site_link_px`` belong to one
    # site unless their change dates differ by more than ``site_split_days``; a site is
    # reported from ``site_min_px`` footprint pixels and confirms with that many confirmed
    # pixels (10 px = 0.1 ha, the minimum mapping unit); smaller confidence moves than
    # ``site_confidence_step`` are not reported.
    site_link_px: int = 2
    site_split_days: int = 90
    site_min_px: int = 10
    site_confidence_step: float = 0.1
    # References.
    s2_reference_count: int = 3
    # False: the references follow only pixels with no evidence at all (S = 0); True: also
    # pixels without an open alert whose observation looked normal (LLR <= 0), so slow
    # drifts (phenology, soil moisture, haze) are followed before they add up to evidence.
    reference_follows_normal: bool = True
    s2_reference_alpha: float = 0.25
    s1_reference_count: int = 8
    s1_reference_alpha: float = 0.05
    s1_current_alpha: float = 0.25
    n_orbits: int = 2

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        if not 0 < self.h_first <= self.h_provisional <= self.h_confirm <= self.evidence_cap:
            problems.append(("h_first", "need 0 < h_first <= h_provisional <= h_confirm <= evidence_cap"))
        if self.evidence_cap > 65535 / EVIDENCE_SCALE:
            problems.append(("evidence_cap", f"must be <= {65535 / EVIDENCE_SCALE:.2f}"))
        if self.min_confirm_days < 0 or self.min_confirm_days > self.window_days:
            problems.append(("min_confirm_days", "must be 0..window_days"))
        if not 1 <= self.window_days <= 254:
            problems.append(("window_days", "must be 1..254 (confirmation lag is stored in a byte)"))
        if not 1 <= self.n_provisional <= 63 or not 1 <= self.n_confirm <= 63:
            problems.append(("n_confirm", "anomalous-observation counts must be 1..63"))
        if not 1 <= self.s2_reference_count <= 255 or not 1 <= self.s1_reference_count <= 255:
            problems.append(("s2_reference_count", "reference counts must be 1..255"))
        for name in ("s2_reference_alpha", "s1_reference_alpha", "s1_current_alpha"):
            if not 0 < getattr(self, name) <= 1:
                problems.append((name, "must be in (0, 1]"))
        if self.s2_weight < 0 or self.s1_weight < 0 or self.llr_clip <= 0:
            problems.append(("s2_weight", "weights must be >= 0 and llr_clip > 0"))
        if not 0 <= self.n_orbits <= 8:
            problems.append(("n_orbits", "must be 0..8"))
        if self.late_after_days < 0 or self.unconfirm_after_days < 0 or self.baseline_days < 0:
            problems.append(("late_after_days", "day counts must be >= 0"))
        if self.site_link_px < 0 or self.site_split_days < 0 or self.site_min_px < 1:
            problems.append(("site_min_px", "site_link_px, site_split_days >= 0, site_min_px >= 1"))
        if problems:
            key, problem = problems[0]
            raise ConfigError("state parameters", key, problem, "fix the StateParams values")

    def site_rules(self) -> SiteRules:
        return SiteRules(link_px=self.site_link_px, split_days=self.site_split_days,
                         min_confirmed_px=self.site_min_px, min_report_px=self.site_min_px,
                         confidence_step=self.site_confidence_step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Observation:
    """One scene resampled onto the city grid, with the model's view of it.

    ``values``: (C, H, W) float32; S2: reflectance 0..1 in band order B02, B03, B04, B08,
    B11, B12; S1: VV (first channel) in the model unit (scaled dB, 0..1). ``valid``: (H, W)
    bool, clear/usable pixels. ``p_change``: (H, W) float32 p(change) against
    :meth:`CityState.model_inputs`, or None (no reference yet, no model): then the scene
    only feeds the references.
    """

    scene_id: str
    modality: Modality
    orbit: str | None
    acquired: date
    values: np.ndarray
    valid: np.ndarray
    p_change: np.ndarray | None = None


Outcome = Literal["applied", "duplicate", "late", "skipped"]


@dataclass
class UpdateResult:
    """What :meth:`CityState.apply` did. ``transitions`` maps "old->new" status names to
    pixel counts (only pairs that changed); ``version`` is the state's version after it."""

    scene_id: str
    outcome: Outcome
    version: int
    transitions: dict[str, int] = field(default_factory=dict)
    n_valid: int = 0
    n_evidence: int = 0
    reason: str | None = None
    sites: list[SiteSummary] = field(default_factory=list)  # sites that moved materially

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


def _llr_table(slope: float, offset: float, weight: float, clip: float) -> np.ndarray:
    centres = (np.arange(_LUT_SIZE, dtype=np.float64) + 0.5) / _LUT_SIZE
    centres = np.clip(centres, _P_EPS, 1 - _P_EPS)
    llr = np.clip(slope * np.log(centres / (1 - centres)) + offset, -clip, clip)
    return (weight * llr).astype(np.float32)


_ARRAY_SPECS: dict[str, tuple[str, str]] = {
    # name: (dtype, leading-dimension kind) — "" = (H, W); "s2" = (6, H, W);
    # "orbit" = (n_orbits, H, W).
    "status": ("u1", ""),
    "run": ("u1", ""),
    "evidence": ("u2", ""),
    "first_day": ("u2", ""),
    "change_day": ("u2", ""),
    "confirm_lag": ("u1", ""),
    "s2_count": ("u1", ""),
    "s2_reference": ("u2", "s2"),
    "s1_count": ("u1", "orbit"),
    "s1_reference": ("u2", "orbit"),
    "s1_current": ("u2", "orbit"),
    "site": ("u4", ""),   # site id of pixels that ever became active (monitor.domain.sites)
    "last_clear": ("u2", ""),  # day of the last clear S2 observation (0 = never)
}


class CityState:
    """The change state of one city. Create with :meth:`create`; persist with
    ``monitor.adapters.state_store.StateStore``; update with :meth:`apply`."""

    def __init__(self, grid: CityGrid, params: StateParams, arrays: dict[str, np.ndarray],
                 metadata: Mapping[str, Any] | None = None) -> None:
        meta = dict(metadata or {})
        self.grid = grid
        self.params = params
        self._a = arrays
        self.version: int = int(meta.get("version", 0))
        # the last scene applied: with the version, it tells two diverging histories apart
        self.last_scene_id: str | None = meta.get("last_scene_id")
        self.orbits: list[str] = list(meta.get("orbits", []))
        # stream ("s2", "s1:<orbit>") -> last applied day
        self.last_day: dict[str, int] = {k: int(v) for k, v in meta.get("last_day", {}).items()}
        # stream -> first applied day (the baseline runs from it; older states: unknown,
        # i.e. their baseline is over)
        self.first_stream_day: dict[str, int] = {
            k: int(v) for k, v in meta.get("first_day", {}).items()}
        # scene id -> [stream, day]; bounded by pruning (see _prune_applied)
        self.applied: dict[str, tuple[str, int]] = {
            k: (str(v[0]), int(v[1])) for k, v in meta.get("applied", {}).items()
        }
        # site id -> last computed summary; the next free id; what the last update reported
        self.sites: dict[int, SiteSummary] = table_from_json(meta.get("sites", {}))
        self.next_site_id: int = int(meta.get("next_site_id", 1))
        # the model that scored the last applied scene (its ChangeEvent names it)
        self.last_model_version: str | None = meta.get("last_model_version")
        self.last_reported: list[SiteSummary] = [
            SiteSummary.from_json(int(k), v) for k, v in meta.get("last_reported", [])]
        self._check_arrays()
        p = params
        self._lut = {
            "s2": _llr_table(p.s2_llr_slope, p.s2_llr_offset, p.s2_weight, p.llr_clip),
            "s1": _llr_table(p.s1_llr_slope, p.s1_llr_offset, p.s1_weight, p.llr_clip),
        }

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, grid: CityGrid, params: StateParams | None = None) -> CityState:
        params = params or StateParams()
        arrays = {name: np.zeros(cls._shape_of(kind, grid, params), dtype=dtype)
                  for name, (dtype, kind) in _ARRAY_SPECS.items()}
        return cls(grid, params, arrays)

    @staticmethod
    def _shape_of(kind: str, grid: CityGrid, params: StateParams) -> tuple[int, ...]:
        if kind == "s2":
            return (S2_N_BANDS, *grid.shape)
        if kind == "orbit":
            return (params.n_orbits, *grid.shape)
        return grid.shape

    def _check_arrays(self) -> None:
        for name, (dtype, kind) in _ARRAY_SPECS.items():
            a = self._a.get(name)
            want = self._shape_of(kind, self.grid, self.params)
            if a is None or a.shape != want or a.dtype != np.dtype(dtype):
                got = "missing" if a is None else f"{a.dtype}{a.shape}"
                raise StateError(
                    self.metadata_city_id(), f"array '{name}' is {got}, expected {dtype}{want}",
                    "the stored state does not match its grid/params; restore an older version",
                )

    def metadata_city_id(self) -> str:
        return f"<grid {self.grid.epsg} {self.grid.origin_x:.0f},{self.grid.origin_y:.0f}>"

    # ---------------------------------------------------------------- persistence parts
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The per-pixel arrays (shared, not copied): name -> array."""
        return dict(self._a)

    def to_metadata(self) -> dict[str, Any]:
        """Everything else, JSON-serialisable."""
        return {
            "format": STATE_FORMAT_VERSION,
            "version": self.version,
            "last_scene_id": self.last_scene_id,
            "grid": self.grid.to_dict(),
            "params": self.params.to_dict(),
            "orbits": list(self.orbits),
            "last_day": dict(self.last_day),
            "first_day": dict(self.first_stream_day),
            "applied": {k: [s, d] for k, (s, d) in self.applied.items()},
            "sites": table_to_json(self.sites),
            "next_site_id": self.next_site_id,
            "last_reported": [[s.site_id, s.to_json()] for s in self.last_reported],
            "last_model_version": self.last_model_version,
        }

    @classmethod
    def from_parts(cls, metadata: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> CityState:
        g = metadata["grid"]
        grid = CityGrid(epsg=int(g["epsg"]), origin_x=float(g["origin_x"]),
                        origin_y=float(g["origin_y"]), width=int(g["width"]),
                        height=int(g["height"]), pixel_size=float(g["pixel_size"]))
        params = StateParams.from_dict(metadata["params"])
        loaded = {k: np.asarray(v) for k, v in arrays.items()}
        if "site" not in loaded and int(metadata.get("format", 1)) < 2:
            # format 1 (before sites): no pixel belongs to a site yet; sites form as the
            # state's active pixels are next updated
            loaded["site"] = np.zeros(grid.shape, dtype=np.uint32)
        if "last_clear" not in loaded and int(metadata.get("format", 1)) < 2:
            loaded["last_clear"] = np.zeros(grid.shape, dtype=np.uint16)  # not known
        return cls(grid, params, loaded, metadata)

    def copy(self) -> CityState:
        return CityState(self.grid, self.params, {k: v.copy() for k, v in self._a.items()},
                         self.to_metadata())

    def has_applied(self, scene_id: str) -> bool:
        """True when ``scene_id`` was applied (and is still remembered: see STATE.md)."""
        return scene_id in self.applied

    # ---------------------------------------------------------------- read access
    @property
    def status(self) -> np.ndarray:
        return self._a["status"]

    @property
    def evidence(self) -> np.ndarray:
        """Accumulated change evidence (CUSUM of weighted LLRs, natural-log units), float32."""
        return self._a["evidence"].astype(np.float32) / np.float32(EVIDENCE_SCALE)

    @property
    def first_day(self) -> np.ndarray:
        return self._a["first_day"]

    @property
    def change_day(self) -> np.ndarray:
        """Estimated day of change: when the current (or confirmed) CUSUM run left zero."""
        return self._a["change_day"]

    @property
    def confirm_day(self) -> np.ndarray:
        lag = self._a["confirm_lag"]
        out = self._a["first_day"].astype(np.int32) + lag.astype(np.int32) - 1
        return np.where(lag > 0, out, 0).astype(np.uint16)

    @property
    def last_clear_day(self) -> np.ndarray:
        """(H, W) uint16 state day of each pixel's last clear S2 observation, 0 = never."""
        return self._a["last_clear"]

    def days_since_clear(self, day: date) -> np.ndarray:
        """(H, W) float32 days from the last clear S2 observation to ``day`` (NaN: never)."""
        last = self._a["last_clear"].astype(np.float32)
        out = np.float32(date_to_day(day)) - last
        return np.where(last > 0, out, np.nan).astype(np.float32)

    @property
    def run_count(self) -> np.ndarray:
        """Anomalous observations in the current evidence run (0..63)."""
        return self._a["run"] & _RUN_COUNT_MASK

    @property
    def run_modalities(self) -> np.ndarray:
        """Bit flags RUN_S2_BIT / RUN_S1_BIT: modalities that saw the current run."""
        return self._a["run"] & (RUN_S2_BIT | RUN_S1_BIT)

    @property
    def s2_count(self) -> np.ndarray:
        return self._a["s2_count"]

    def s1_count_for(self, orbit: str) -> np.ndarray | None:
        slot = self._slot_of(orbit)
        return None if slot is None else self._a["s1_count"][slot]

    def confidence(self) -> np.ndarray:
        """0..1 per pixel: evidence relative to the confirmation threshold; a confirmed
        pixel is at least 0.5 (it passed every test once), a retracted one at most 0.5."""
        c = np.clip(self.evidence / self.params.h_confirm, 0, 1)
        status = self._a["status"]
        c = np.where(status == STATUS_CONFIRMED, np.maximum(c, 0.5), c)
        c = np.where((status == STATUS_RETRACTED) | (status == STATUS_WITHDRAWN),
                     np.minimum(c, 0.5), c)
        return c.astype(np.float32)

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self._a["status"].ravel(), minlength=_N_STATUS)
        return {
            "version": self.version,
            "pixels": int(self.grid.n_pixels),
            **{s.name.lower(): int(counts[s]) for s in Status},
            "orbits": list(self.orbits),
            "last_day": {k: day_to_date(v).isoformat() for k, v in self.last_day.items()},
        }

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._a.values()))

    def nbytes_per_pixel(self) -> float:
        return self.nbytes() / self.grid.n_pixels

    # ---------------------------------------------------------------- baseline
    @staticmethod
    def stream_of(modality: str, orbit: str | None) -> str:
        """The stream a scene belongs to: "s2", or "s1:<relative orbit>"."""
        return "s2" if modality == "s2" else f"s1:{orbit}"

    def baseline_end_day(self, stream: str) -> int | None:
        """The first day after the stream's baseline (None: the stream has not started)."""
        first = self.first_stream_day.get(stream)
        if first is None:
            return 0 if stream in self.last_day else None  # a state from before baselines
        return first + self.params.baseline_days

    def in_baseline(self, modality: str, orbit: str | None, acquired: date) -> bool:
        """True while a scene of this stream acquired on ``acquired`` only builds the
        references (its stream's first ``baseline_days``, or its first scene)."""
        end = self.baseline_end_day(self.stream_of(modality, orbit))
        if end is None:
            return self.params.baseline_days > 0
        return date_to_day(acquired) < end

    # ---------------------------------------------------------------- references
    def _slot_of(self, orbit: str | None) -> int | None:
        if orbit is None or orbit not in self.orbits:
            return None
        return self.orbits.index(orbit)

    def reference_for(self, modality: str, orbit: str | None = None
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        """(reference (C, H, W) float32 in model units, valid (H, W) bool), or None when no
        pixel has a reference yet. S2: the six-band reflectance reference; S1: the slow
        reference mean of VV for ``orbit``."""
        if modality == "s2":
            valid = self._a["s2_count"] >= self.params.s2_reference_count
            if not valid.any():
                return None
            return self._a["s2_reference"].astype(np.float32) / np.float32(S2_SCALE), valid
        if modality == "s1":
            slot = self._slot_of(orbit)
            if slot is None:
                return None
            valid = self._a["s1_count"][slot] >= self.params.s1_reference_count
            if not valid.any():
                return None
            return self._a["s1_reference"][slot][None].astype(np.float32) / np.float32(S1_SCALE), valid
        raise ObservationError("<reference>", f"unknown modality {modality!r}", "use 's1' or 's2'")

    def s1_context(self, day: date | None = None, max_age_days: int = 45
                   ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
        """The radar context an S2 observation is fused with (the dual-stream model's S1
        inputs): (orbit, reference mean (1, H, W), current ~3-month mean (1, H, W), valid),
        of the orbit seen most recently (at most ``max_age_days`` before ``day``) among the
        orbits whose reference is built; None when no orbit qualifies."""
        best: tuple[int, int] | None = None  # (last day, slot)
        for slot, orbit in enumerate(self.orbits):
            last = self.last_day.get(f"s1:{orbit}", 0)
            if day is not None and last < date_to_day(day) - max_age_days:
                continue
            ready = self._a["s1_count"][slot] >= self.params.s1_reference_count
            if not ready.any():
                continue
            if best is None or last > best[0]:
                best = (last, slot)
        if best is None:
            return None
        slot = best[1]
        ref = self._a["s1_reference"][slot][None].astype(np.float32) / np.float32(S1_SCALE)
        cur = self._a["s1_current"][slot][None].astype(np.float32) / np.float32(S1_SCALE)
        valid = self._a["s1_count"][slot] >= self.params.s1_reference_count
        return self.orbits[slot], ref, cur, valid

    def s1_mean_for(self, orbit: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The running ~3-month mean of VV for ``orbit`` as stored (before a new scene)."""
        slot = self._slot_of(orbit)
        if slot is None:
            return None
        valid = self._a["s1_count"][slot] >= self.params.s1_reference_count
        return self._a["s1_current"][slot][None].astype(np.float32) / np.float32(S1_SCALE), valid

    def _s1_current_after(self, slot: int, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The running mean including observation ``x`` (float32, H, W); pure."""
        p = self.params
        n = self._a["s1_count"][slot]
        cur = self._a["s1_current"][slot].astype(np.float32) / np.float32(S1_SCALE)
        # While the reference is being built, the current mean is the same running average.
        rate = np.where(n < p.s1_reference_count, 1.0 / (n.astype(np.float32) + 1.0),
                        np.float32(p.s1_current_alpha))
        x = np.clip(np.nan_to_num(x), 0.0, 1.0)
        return np.where(valid, cur + rate * (x - cur), cur).astype(np.float32)

    def model_inputs(self, obs: Observation
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(reference, observation, valid) to give the change model for ``obs``, or None
        when no pixel has a reference yet (then apply ``obs`` with ``p_change=None``).

        S2: the S2 reference and the scene itself. S1: the orbit's reference mean and the
        orbit's running mean *including* this scene (what the S1 models were trained on:
        3-month means of one relative orbit), each (1, H, W)."""
        self._validate(obs)
        if self.in_baseline(obs.modality, obs.orbit, obs.acquired):
            return None  # warm-up: references only, no model, no evidence
        valid = obs.valid & np.all(np.isfinite(obs.values), axis=0)
        if obs.modality == "s2":
            ref = self.reference_for("s2")
            if ref is None:
                return None
            return ref[0], obs.values.astype(np.float32, copy=False), valid & ref[1]
        slot = self._slot_of(obs.orbit)
        if slot is None:
            return None
        ready = self._a["s1_count"][slot] >= self.params.s1_reference_count
        if not ready.any():
            return None
        cur = self._s1_current_after(slot, obs.values[0].astype(np.float32), valid)
        ref = self._a["s1_reference"][slot].astype(np.float32) / np.float32(S1_SCALE)
        return ref[None], cur[None], valid & ready

    # ---------------------------------------------------------------- update
    def _validate(self, obs: Observation) -> None:
        shape = self.grid.shape
        problem = None
        if obs.modality not in ("s1", "s2"):
            problem = f"modality {obs.modality!r} is not 's1' or 's2'"
        elif obs.values.ndim != 3 or obs.values.shape[1:] != shape:
            problem = f"values have shape {obs.values.shape}, the city grid is (C, {shape[0]}, {shape[1]})"
        elif obs.modality == "s2" and obs.values.shape[0] != S2_N_BANDS:
            problem = f"S2 values have {obs.values.shape[0]} bands, expected 6 (B02 B03 B04 B08 B11 B12)"
        elif obs.modality == "s1" and obs.values.shape[0] < 1:
            problem = "S1 values have no band (expected VV first)"
        elif obs.modality == "s1" and not obs.orbit:
            problem = "S1 observation has no relative orbit"
        elif obs.valid.shape != shape or obs.valid.dtype != np.bool_:
            problem = f"valid mask is {obs.valid.dtype}{obs.valid.shape}, expected bool{shape}"
        elif obs.p_change is not None and obs.p_change.shape != shape:
            problem = f"p_change has shape {obs.p_change.shape}, expected {shape}"
        if problem is None:
            try:
                date_to_day(obs.acquired)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            raise ObservationError(obs.scene_id, problem)

    def _prune_applied(self) -> None:
        # An id older than its stream's last day minus the lateness limit can never be
        # applied again (it would be 'late'), so it need not be remembered.
        limit = self.params.late_after_days
        self.applied = {
            sid: (stream, day) for sid, (stream, day) in self.applied.items()
            if day >= self.last_day.get(stream, 0) - limit
        }

    def apply(self, obs: Observation) -> UpdateResult:
        """Fold one observation into the state (idempotent per scene id).

        Outcomes: 'applied'; 'duplicate' (scene id already applied: nothing changes);
        'late' (older than the last applied scene of its stream — S2, or S1 of that orbit —
        by more than ``late_after_days``: nothing changes, the caller records it);
        'skipped' (an S1 orbit beyond ``n_orbits``). Scenes out of order within the
        lateness limit are applied normally with their own acquisition day.
        """
        self._validate(obs)
        if obs.scene_id in self.applied:
            return UpdateResult(obs.scene_id, "duplicate", self.version,
                                reason="scene already applied")
        p = self.params
        day = date_to_day(obs.acquired)
        stream = "s2" if obs.modality == "s2" else f"s1:{obs.orbit}"
        last = self.last_day.get(stream, 0)
        if last and day < last - p.late_after_days:
            return UpdateResult(
                obs.scene_id, "late", self.version,
                reason=f"acquired {obs.acquired}, {last - day} days before the last applied "
                       f"{stream} scene (limit {p.late_after_days})")
        a = self._a
        n = self.grid.n_pixels
        if obs.modality == "s2":
            count, ref = a["s2_count"], a["s2_reference"]
            cur = np.zeros(1, dtype=np.uint16)
            k_ref, alpha_ref, scale, vmax = p.s2_reference_count, p.s2_reference_alpha, S2_SCALE, 65535 / S2_SCALE
            values = obs.values
        else:
            slot = self._slot_of(obs.orbit)
            if slot is None:
                if len(self.orbits) >= p.n_orbits:
                    return UpdateResult(
                        obs.scene_id, "skipped", self.version,
                        reason=f"orbit {obs.orbit} would be orbit number {len(self.orbits) + 1}, "
                               f"the state keeps {p.n_orbits} ({', '.join(self.orbits)})")
                self.orbits.append(str(obs.orbit))
                slot = len(self.orbits) - 1
            count, ref, cur = a["s1_count"][slot], a["s1_reference"][slot][None], a["s1_current"][slot]
            k_ref, alpha_ref, scale, vmax = p.s1_reference_count, p.s1_reference_alpha, S1_SCALE, 1.0
            values = obs.values[:1]
        has_p = obs.p_change is not None and not self.in_baseline(obs.modality, obs.orbit,
                                                                  obs.acquired)
        p_change = (np.ascontiguousarray(obs.p_change, dtype=np.float32).reshape(n) if has_p
                    else np.zeros(1, dtype=np.float32))
        transitions = np.zeros((_N_STATUS, _N_STATUS), dtype=np.int64)
        status_before = a["status"].copy()
        counts = _apply_kernel(
            np.ascontiguousarray(values, dtype=np.float32).reshape(values.shape[0], n),
            np.ascontiguousarray(obs.valid).reshape(n), p_change, has_p,
            self._lut[obs.modality],
            a["status"].reshape(n), a["run"].reshape(n), a["evidence"].reshape(n),
            a["first_day"].reshape(n), a["change_day"].reshape(n), a["confirm_lag"].reshape(n),
            count.reshape(n), ref.reshape(ref.shape[0], n), cur.reshape(cur.size),
            obs.modality == "s1", day, RUN_S2_BIT if obs.modality == "s2" else RUN_S1_BIT,
            k_ref, alpha_ref, p.s1_current_alpha, scale, vmax,
            p.h_first, p.h_provisional, p.h_confirm, p.evidence_cap,
            p.n_provisional, p.n_confirm, p.min_confirm_days, p.window_days,
            p.unconfirm_after_days, p.reference_follows_normal, transitions)
        if obs.modality == "s2":
            clear = obs.valid & np.all(np.isfinite(obs.values), axis=0)
            last_clear = a["last_clear"]
            last_clear[clear] = np.maximum(last_clear[clear], np.uint16(day))
        self.applied[obs.scene_id] = (stream, day)
        if stream not in self.first_stream_day or day < self.first_stream_day[stream]:
            if stream not in self.last_day:  # a state from before baselines keeps none
                self.first_stream_day[stream] = day
            elif stream in self.first_stream_day:
                self.first_stream_day[stream] = day
        self.last_day[stream] = max(last, day)
        self._prune_applied()
        reported = self._update_sites(status_before, day)
        self.version += 1
        self.last_scene_id = obs.scene_id
        return UpdateResult(obs.scene_id, "applied", self.version,
                            transitions=_transitions_dict(transitions),
                            n_valid=int(counts[0]), n_evidence=int(counts[1]), sites=reported)

    def _update_sites(self, status_before: np.ndarray, day: int) -> list[SiteSummary]:
        """Assign newly active pixels to sites and keep what moved (monitor.domain.sites)."""
        a = self._a
        changed = a["status"] != status_before
        if not changed.any() and not any(s.active for s in self.sites.values()):
            self.last_reported = []
            return []
        reported, self.sites, self.next_site_id = update_sites(
            a["status"], a["site"], a["first_day"], a["change_day"], self.confirm_day,
            self.confidence(), self.sites, self.next_site_id, day, self.params.site_rules(),
            changed=changed)
        self.last_reported = reported
        return reported


# The update kernel: one pass over the pixels, each pixel's whole lifecycle step in
# straight-line code (numba-compiled; a numpy version with masks was ~10 Mpx/s, dominated
# by temporaries). Arrays are flat views of the state; it writes them in place.
@numba.njit(cache=True, nogil=True, error_model="numpy",
            fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
def _apply_kernel(values, valid, p_change, has_p, lut, status, run, evidence, first_day,
                  change_day, confirm_lag, count, ref, cur, has_cur, day, modality_bit,
                  k_ref, alpha_ref, alpha_cur, scale, vmax, h_first, h_prov, h_conf, cap,
                  n_prov, n_conf, min_days, window, unconfirm_after, follow_normal,
                  transitions):  # pragma: no cover
    n_pix = status.size
    n_band = values.shape[0]
    lut_n = lut.size
    ev_scale = EVIDENCE_SCALE
    inv_ev_scale = 1.0 / EVIDENCE_SCALE
    inv_scale = np.float32(1.0 / scale)
    f_scale = np.float32(scale)
    f_vmax = np.float32(vmax)
    f_alpha_ref = np.float32(alpha_ref)
    f_alpha_cur = np.float32(alpha_cur)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    half = np.float32(0.5)
    # Pass 1 (vectorised): which pixels are observations at all.
    ok = np.empty(n_pix, dtype=np.bool_)
    for i in range(n_pix):
        ok[i] = valid[i]
    for b in range(n_band):
        for i in range(n_pix):
            ok[i] = ok[i] & np.isfinite(values[b, i])
    # Pass 2 (per pixel, branchy): evidence, lifecycle, and the reference update rate.
    rate_ref = np.empty(n_pix, dtype=np.float32)
    rate_cur = np.empty(n_pix if has_cur else 1, dtype=np.float32)
    n_valid = 0
    n_evid = 0
    for i in range(n_pix):
        s_old = status[i]
        s = s_old
        ev_q = evidence[i]
        r = run[i]
        rate = zero
        normal = True  # this observation gave no positive evidence
        # An alert that did not confirm within the window is retracted, observed or not.
        if (s == 1 or s == 2) and day - np.int64(first_day[i]) > window:
            s = 4
            ev_q = 0
            r = 0
        if ok[i]:
            n_valid += 1
            cnt = count[i]
            if has_p and cnt >= k_ref and np.isfinite(p_change[i]):
                n_evid += 1
                pb = p_change[i] * lut_n
                idx = 0 if pb < 0 else (lut_n - 1 if pb >= lut_n else np.int64(pb))
                llr = lut[idx]
                normal = llr <= 0
                ev = ev_q * inv_ev_scale
                new = min(max(ev + llr, 0.0), cap)
                new_q = np.uint16(np.int64(new * ev_scale + 0.5))
                if ev_q == 0 and new_q > 0 and s != 3:
                    change_day[i] = day  # the run leaves zero: the estimated time of change
                if new_q == 0:
                    r = 0
                elif llr > 0:
                    c = r & 0x3F
                    if c < 0x3F:
                        c += 1
                    r = (r & 0xC0) | c | modality_bit
                ev_q = new_q
                c = r & 0x3F
                if (s == 0 or s == 4 or s == 5) and new >= h_first:
                    s = 1
                    first_day[i] = day
                    confirm_lag[i] = 0
                if s == 1 and (new >= h_prov or c >= n_prov):
                    s = 2
                if s == 1 or s == 2:
                    lag = day - np.int64(first_day[i])
                    lasted = day - np.int64(change_day[i])
                    if new >= h_conf and c >= n_conf and lag <= window and lasted >= min_days:
                        s = 3
                        confirm_lag[i] = max(lag, 0) + 1
                    elif new_q == 0:
                        s = 4
                elif s == 3 and new_q == 0 and unconfirm_after > 0:
                    since = day - (np.int64(first_day[i]) + np.int64(confirm_lag[i]) - 1)
                    if since >= unconfirm_after:
                        s = 5  # withdrawn: a confirmation is never silently undone
            # References: the first k_ref valid observations are averaged, then an EWMA
            # follows pixels where nothing is going on (no evidence, no open alert).
            if cnt < k_ref:
                rate = one / (np.float32(cnt) + one)
            elif (s == 0 or s == 4 or s == 5) and (ev_q == 0 or (follow_normal and normal)):
                rate = f_alpha_ref
            if has_cur:
                rate_cur[i] = one / (np.float32(cnt) + one) if cnt < k_ref else f_alpha_cur
            if cnt < 255:
                count[i] = cnt + 1
        elif has_cur:
            rate_cur[i] = zero
        rate_ref[i] = rate
        evidence[i] = ev_q
        run[i] = r
        if s != s_old:
            # only changes are counted: a counter bumped for every pixel would chain each
            # iteration to the previous one through memory
            status[i] = s
            transitions[s_old, s] += 1
    # Pass 3 (vectorised): the EWMAs. A zero rate rewrites the same fixed-point value.
    for b in range(n_band):
        for i in range(n_pix):
            old = np.float32(ref[b, i]) * inv_scale
            rt = rate_ref[i]
            x = min(max(values[b, i], zero), f_vmax)
            d = rt * (x - old) if rt > zero else zero
            ref[b, i] = np.uint16(np.int32((old + d) * f_scale + half))
    if has_cur:
        for i in range(n_pix):
            old = np.float32(cur[i]) * inv_scale
            rt = rate_cur[i]
            x = min(max(values[0, i], zero), f_vmax)
            d = rt * (x - old) if rt > zero else zero
            cur[i] = np.uint16(np.int32((old + d) * f_scale + half))
    return (n_valid, n_evid)


def _transitions_dict(table: np.ndarray) -> dict[str, int]:
    out = {}
    for before in range(_N_STATUS):
        for after in range(_N_STATUS):
            if before != after and table[before, after]:
                key = f"{Status(before).name.lower()}->{Status(after).name.lower()}"
                out[key] = int(table[before, after])
    return out
