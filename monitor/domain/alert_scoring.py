"""Scoring alerts (not pixels of a state) against ground truth, as a user would judge them.

Pure numpy. The inputs are the truth rasters of a stream (``ChangeTruth``: change date and
site id per pixel, epoch days since 1970-01-01) and the alerts as the system published them,
each rasterised onto the same grid. Rules, so every figure can be checked by hand:

- **Sites** are the truth's site ids; a site is *scored* when it has at least
  ``min_site_pixels`` pixels inside the scored area (smaller ones are below the minimum
  mapping unit: they count in pixel figures, not in object figures) and its change date
  lies in the monitored period.
- **Confirmed alerts** are the alerts whose final status is ``confirmed``.
- Pixels: a pixel is predicted changed when a confirmed alert covers it; positives are
  truth pixels changed within the period; pixels outside ``scored`` are ignored.
- Objects: a site is *found* when a confirmed alert overlaps it (one pixel or more); a
  confirmed alert is *right* when it overlaps a site (any size, changed in the period).
  Object precision = right alerts / confirmed alerts; recall = found / scored sites.
- Time of change error: per found site, |change date of the confirmed alert overlapping
  it most - the site's true date|; confirmation delay: that alert's confirmation date -
  the true date; warning delay: the day that alert was first published provisional (or
  confirmed, whichever came first) - the true date, where the alerts carry that day.
  Medians are over found sites.
- False alerts: confirmed alerts overlapping no site, per km2 of scored area per year of
  the monitored period.
- Lifecycle: of the alerts that ever reached ``provisional`` (or beyond), the share whose
  final status is ``retracted``; alerts confirmed before the earliest true change of the
  city, and alerts confirmed before ``baseline_end`` (the warm-up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from monitor.domain.scoring import ChangeTruth
from monitor.domain.vocabulary import DEFAULT_FEED_STATUSES
from monitor.errors import ScoringError

# An alert warns once it has a status the default feeds show (provisional, or confirmed
# straight away).
WARNING_STATUSES = DEFAULT_FEED_STATUSES


@dataclass(frozen=True)
class ScoredAlert:
    """One alert as published (its last revision), rasterised onto the truth grid."""

    alert_id: str
    status: str
    mask: np.ndarray                 # (H, W) bool footprint
    change_day: int | None           # epoch days (1970) of the estimated change
    confirmed_day: int | None
    first_day: int | None
    ever_provisional: bool = False   # reached provisional or confirmed at some revision
    warning_day: int | None = None   # first revision provisional or confirmed (None: unknown)


@dataclass
class AlertScore:
    pixel_tp: int = 0
    pixel_fp: int = 0
    pixel_fn: int = 0
    n_sites: int = 0
    sites_found: int = 0
    n_confirmed: int = 0
    confirmed_right: int = 0
    false_alerts: int = 0
    scored_km2: float = 0.0
    years: float = 0.0
    alerts_ever: int = 0
    provisional_ever: int = 0
    provisional_ever_retracted: int = 0
    retracted_final: int = 0
    confirmed_before_change: int = 0
    confirmed_in_baseline: int = 0
    time_errors: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    warning_delays: list[float] = field(default_factory=list)

    # -- derived figures ---------------------------------------------------------------
    @staticmethod
    def _ratio(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    @staticmethod
    def _f1(p: float, r: float) -> float:
        if np.isnan(p) or np.isnan(r):
            return float("nan")
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    @property
    def pixel_precision(self) -> float:
        return self._ratio(self.pixel_tp, self.pixel_tp + self.pixel_fp)

    @property
    def pixel_recall(self) -> float:
        return self._ratio(self.pixel_tp, self.pixel_tp + self.pixel_fn)

    @property
    def pixel_f1(self) -> float:
        return self._f1(self.pixel_precision, self.pixel_recall)

    @property
    def object_precision(self) -> float:
        return self._ratio(self.confirmed_right, self.n_confirmed)

    @property
    def object_recall(self) -> float:
        return self._ratio(self.sites_found, self.n_sites)

    @property
    def object_f1(self) -> float:
        p, r = self.object_precision, self.object_recall
        if self.n_confirmed == 0 and self.n_sites > 0:
            return 0.0
        return self._f1(p, r)

    @property
    def time_error_median_days(self) -> float:
        return float(np.median(self.time_errors)) if self.time_errors else float("nan")

    @property
    def delay_median_days(self) -> float:
        return float(np.median(self.delays)) if self.delays else float("nan")

    @property
    def warning_delay_median_days(self) -> float:
        return float(np.median(self.warning_delays)) if self.warning_delays else float("nan")

    @property
    def false_alerts_per_km2_year(self) -> float:
        return self._ratio(self.false_alerts, self.scored_km2 * self.years)

    @property
    def retracted_share(self) -> float:
        return self._ratio(self.provisional_ever_retracted, self.provisional_ever)

    def figures(self) -> dict[str, float | int]:
        """The headline figures (rounded), as the benchmark table prints them."""
        def r(v: float, n: int = 3) -> float:
            return round(v, n) if not np.isnan(v) else float("nan")

        return {
            "object_precision": r(self.object_precision), "object_recall": r(self.object_recall),
            "object_f1": r(self.object_f1), "pixel_precision": r(self.pixel_precision),
            "pixel_recall": r(self.pixel_recall), "pixel_f1": r(self.pixel_f1),
            "time_error_median_days": r(self.time_error_median_days, 1),
            "delay_median_days": r(self.delay_median_days, 1),
            "warning_delay_median_days": r(self.warning_delay_median_days, 1),
            "false_alerts_per_km2_year": r(self.false_alerts_per_km2_year),
            "retracted_share": r(self.retracted_share),
            "n_sites": self.n_sites, "sites_found": self.sites_found,
            "n_confirmed": self.n_confirmed, "false_alerts": self.false_alerts,
            "alerts_ever": self.alerts_ever, "retracted_final": self.retracted_final,
            "confirmed_before_change": self.confirmed_before_change,
            "confirmed_in_baseline": self.confirmed_in_baseline,
        }

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), **self.figures()}

    def add(self, other: AlertScore) -> None:
        """Pool another city's score into this one (counts add, medians re-pool)."""
        for name in ("pixel_tp", "pixel_fp", "pixel_fn", "n_sites", "sites_found", "n_confirmed",
                     "confirmed_right", "false_alerts", "alerts_ever", "provisional_ever",
                     "provisional_ever_retracted", "retracted_final", "confirmed_before_change",
                     "confirmed_in_baseline"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        # false alerts per km2-year pool over area x time
        area_years = self.scored_km2 * self.years + other.scored_km2 * other.years
        self.scored_km2 += other.scored_km2
        self.years = area_years / self.scored_km2 if self.scored_km2 else 0.0
        self.time_errors.extend(other.time_errors)
        self.delays.extend(other.delays)
        self.warning_delays.extend(other.warning_delays)


def score_alerts(truth: ChangeTruth, alerts: Sequence[ScoredAlert], *, scored: np.ndarray,
                 pixel_area_m2: float, period: tuple[int, int], min_site_pixels: int = 10,
                 baseline_end: int | None = None) -> AlertScore:
    """Score published alerts against the truth (see the module docstring for the rules)."""
    shape = truth.change_date.shape
    if scored.shape != shape or any(a.mask.shape != shape for a in alerts):
        raise ScoringError(f"alert masks or scored area do not have the truth's shape {shape}",
                           "rasterise the alerts onto the truth grid")
    start, end = period
    if end <= start:
        raise ScoringError(f"monitored period {period} is empty", "give (start, end) days")
    tdate = truth.change_date.astype(np.int64)
    labels = truth.site_labels.astype(np.int64)
    in_period = (tdate >= start) & (tdate <= end) & (labels > 0)
    positive = in_period & scored
    dont_care = (labels > 0) & (tdate > 0) & (tdate < start)

    confirmed = [a for a in alerts if a.status == "confirmed"]
    predicted = np.zeros(shape, dtype=bool)
    for a in confirmed:
        predicted |= a.mask
    predicted &= scored & ~dont_care
    score = AlertScore()
    score.pixel_tp = int((predicted & positive).sum())
    score.pixel_fp = int((predicted & ~positive).sum())
    score.pixel_fn = int((positive & ~predicted).sum())

    n_labels = int(labels.max()) + 1 if labels.size else 1
    site_px = np.bincount(labels[positive], minlength=n_labels)
    site_day = np.zeros(n_labels, dtype=np.int64)
    site_day[labels[in_period]] = tdate[in_period]
    scored_sites = {int(s) for s in np.flatnonzero(site_px >= min_site_pixels) if s > 0}
    score.n_sites = len(scored_sites)
    best: dict[int, tuple[int, ScoredAlert]] = {}
    for a in confirmed:
        hit = a.mask & in_period
        score.n_confirmed += 1
        if hit.any():
            score.confirmed_right += 1
            ids, counts = np.unique(labels[hit], return_counts=True)
            for s, n in zip(ids.tolist(), counts.tolist(), strict=True):
                if s in scored_sites and n > best.get(s, (0, a))[0]:
                    best[s] = (int(n), a)
        elif (a.mask & scored & ~dont_care).any():
            score.false_alerts += 1
        else:  # entirely on sites that changed before monitoring, or outside the images
            score.n_confirmed -= 1
    score.sites_found = len(best)
    for s, (_, a) in best.items():
        if a.change_day is not None:
            score.time_errors.append(float(abs(a.change_day - site_day[s])))
        if a.confirmed_day is not None:
            score.delays.append(float(a.confirmed_day - site_day[s]))
        if a.warning_day is not None:
            score.warning_delays.append(float(a.warning_day - site_day[s]))
    score.scored_km2 = float((scored & ~dont_care).sum()) * pixel_area_m2 / 1e6
    score.years = (end - start) / 365.25
    first_change = int(tdate[in_period].min()) if in_period.any() else None
    score.alerts_ever = len(alerts)
    for a in alerts:
        if a.ever_provisional or a.status in WARNING_STATUSES:
            score.provisional_ever += 1
            if a.status in ("retracted", "withdrawn"):
                score.provisional_ever_retracted += 1
        if a.status in ("retracted", "withdrawn"):
            score.retracted_final += 1
        if a.confirmed_day is not None and a.status == "confirmed":
            if first_change is not None and a.confirmed_day < first_change:
                score.confirmed_before_change += 1
            if baseline_end is not None and a.confirmed_day < baseline_end:
                score.confirmed_in_baseline += 1
    return score
