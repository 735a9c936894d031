"""Every tunable of the change state (:class:`StateParams`), validated; the defaults and
where they came from are in STATE.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from monitor.domain.sites import SiteRules
from monitor.domain.state_kernel import EVIDENCE_SCALE
from monitor.errors import ConfigError


@dataclass(frozen=True)
class StateParams:
    """Every tunable of the change state. Defaults: see STATE.md for where they came from.

    LLR mapping per modality: ``LLR = clip(slope * logit(p) + offset, -llr_clip, llr_clip)``,
    the log-likelihood ratio change/no-change of a model output ``p``, fitted by logistic
    calibration on data with truth (``monitor.domain.calibration.fit_llr``). ``weight``
    discounts a modality whose successive outputs are not independent (S1 running means).
    """

    # LLR mapping of the shipped 2.0.0 models (Platt-calibrated p in their graphs):
    # provisional values from the held-out fold predictions on the real-imagery streams
    # (STATE.md, "Parameters and where they came from"). S1 alone carries no weight (it
    # added more false alerts than sites); radar enters through the dual-stream model,
    # which scores S2 scenes with an S1 orbit seen within 45 days. Re-fit whenever the
    # change models are retrained (monitor/streams/calibrate.py).
    s2_llr_slope: float = 1.5
    s2_llr_offset: float = 5.8
    s1_llr_slope: float = 0.681
    s1_llr_offset: float = 0.983
    s2_weight: float = 1.0
    s1_weight: float = 0.0
    llr_clip: float = 3.0
    # CUSUM thresholds on the evidence (natural-log units) and its cap. h_first: a
    # RADD-like first detection (one strong observation); h_provisional (with
    # n_provisional 0: by evidence only): calibrated leave-cities-out on the real-imagery
    # streams of ten cities for the retraction target (STATE.md); h_confirm: calibrated
    # (above); the cap (h_confirm + 3) bounds how long a confirmed or open alert takes to
    # drain.
    h_first: float = 2.0
    h_provisional: float = 5.0
    h_confirm: float = 9.0
    evidence_cap: float = 12.0
    # Anomalous observations in the current run: promote to provisional (0: never by count,
    # evidence >= h_provisional only) / needed to confirm.
    n_provisional: int = 0
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
    # pixels (10 px = 0.1 ha, the minimum mapping unit); it becomes provisional with
    # ``site_provisional_px`` provisional-or-confirmed pixels (0: ``site_min_px``; a larger
    # early-warning unit than the mapping unit cuts small warnings that fade); smaller
    # confidence moves than ``site_confidence_step`` are not reported.
    site_link_px: int = 2
    site_split_days: int = 90
    site_min_px: int = 10
    site_provisional_px: int = 0
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
        if not 0 <= self.n_provisional <= 63 or not 1 <= self.n_confirm <= 63:
            problems.append(("n_confirm", "anomalous-observation counts must be 1..63 "
                                          "(n_provisional 0..63, 0: evidence only)"))
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
        if self.site_provisional_px < 0:
            problems.append(("site_provisional_px", "must be >= 0 (0: site_min_px)"))
        if problems:
            key, problem = problems[0]
            raise ConfigError("state parameters", key, problem, "fix the StateParams values")

    def site_rules(self) -> SiteRules:
        return SiteRules(link_px=self.site_link_px, split_days=self.site_split_days,
                         min_confirmed_px=self.site_min_px, min_report_px=self.site_min_px,
                         min_provisional_px=self.site_provisional_px,
                         confidence_step=self.site_confidence_step)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
