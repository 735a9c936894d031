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
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np

from monitor.domain.grid import CityGrid
from monitor.domain.site_log import SiteLog, log_from_json, log_observation, log_to_json
from monitor.domain.sites import (
    SiteSummary,
    table_from_json,
    table_to_json,
    update_sites,
)
from monitor.domain.state_kernel import (  # noqa: F401  (re-exported)
    _N_STATUS,
    _RUN_COUNT_MASK,
    _RUN_FLAGS_MASK,
    EVIDENCE_SCALE,
    RUN_S1_BIT,
    RUN_S2_BIT,
    S1_SCALE,
    S2_SCALE,
    STATUS_CONFIRMED,
    STATUS_FIRST,
    STATUS_NONE,
    STATUS_PROVISIONAL,
    STATUS_RETRACTED,
    STATUS_WITHDRAWN,
    _apply_kernel,
    _llr_table,
    _transitions_dict,
)
from monitor.domain.state_params import StateParams  # noqa: F401  (re-exported)

# The day epoch, its conversions and the status codes are defined once, in the
# vocabulary; importing them here keeps ``monitor.domain.state.Status`` (etc.) working.
from monitor.domain.vocabulary import DAY_EPOCH as EPOCH  # noqa: F401
from monitor.domain.vocabulary import Status, date_to_day, day_to_date
from monitor.errors import ObservationError, StateError

S2_N_BANDS = 6
STATE_FORMAT_VERSION = 2  # 2: per-pixel site ids and the site table

Modality = Literal["s1", "s2"]


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
        # site id -> what each recent observation said about it (monitor.domain.site_log)
        self.site_log: SiteLog = log_from_json(meta.get("site_log"))
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
            "site_log": log_to_json(self.site_log),
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
            # n_provisional 0: the count never promotes (a run counts at most 63)
            p.n_provisional or 64, p.n_confirm, p.min_confirm_days, p.window_days,
            p.unconfirm_after_days, p.reference_follows_normal, transitions)
        if obs.modality == "s2":
            clear = obs.valid & np.all(np.isfinite(obs.values), axis=0)
            last_clear = a["last_clear"]
            last_clear[clear] = np.maximum(last_clear[clear], np.uint16(day))
        self.applied[obs.scene_id] = (stream, day)
        # (a state saved before baselines existed keeps none for its old streams)
        if ((stream not in self.first_stream_day or day < self.first_stream_day[stream])
                and (stream not in self.last_day or stream in self.first_stream_day)):
            self.first_stream_day[stream] = day
        self.last_day[stream] = max(last, day)
        self._prune_applied()
        reported = self._update_sites(status_before, day)
        if self.sites:
            log_observation(self.site_log, self.sites, site=a["site"], status=a["status"],
                            evidence=a["evidence"], evidence_scale=float(EVIDENCE_SCALE),
                            valid=np.asarray(obs.valid, dtype=bool), values=values,
                            p_change=obs.p_change if has_p else None, day=day, stream=stream)
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

