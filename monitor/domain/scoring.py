"""Scoring a change map against ground truth: pixels, objects, timing, false alerts.

Pure logic on arrays (numpy, and scipy.ndimage for connected components). Dates are
int32 days since 1970-01-01 with 0 meaning "none", as in the synthetic truth rasters.

Rules (so that every number can be reproduced by hand):
- A truth pixel is *positive* if its change date falls in the monitored period
  [start, end]. Pixels that changed before the period are *don't care* (they were
  already changed when monitoring began); changes after the period are negatives.
- A predicted pixel is *positive* if it is confirmed.
- Predicted objects are the 8-connected components of the confirmed pixels. A component
  and a site *match* when their overlap is at least ``min_overlap`` of the smaller of the
  two. Object recall = matched sites / sites in the period; object precision = matched
  components / components (components lying only on don't-care pixels are not counted).
- Time-of-change error: |estimated change date - true change date| over true-positive
  pixels that have an estimate. Detection delay: confirmation date - true change date
  over true-positive pixels that have a confirmation date.
- False alerts: components that match no site (and not only don't-care pixels), per km2
  of scored area per year of monitored period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from monitor.errors import ScoringError

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class ChangeTruth:
    change_date: np.ndarray   # int32 days since epoch, 0 = no change
    site_labels: np.ndarray   # int32 site id, 0 = none


@dataclass(frozen=True)
class ChangePrediction:
    confirmed: np.ndarray          # bool: pixel's change is confirmed
    change_date: np.ndarray        # int32 estimated change date, 0 = none
    confirmation_date: np.ndarray  # int32 date the change was confirmed, 0 = none


@dataclass(frozen=True)
class ChangeScore:
    pixel_tp: int
    pixel_fp: int
    pixel_fn: int
    pixel_precision: float
    pixel_recall: float
    pixel_f1: float
    n_sites: int
    n_objects: int
    object_tp_sites: int
    object_tp_objects: int
    object_precision: float
    object_recall: float
    object_f1: float
    time_error_mean_days: float
    time_error_median_days: float
    delay_mean_days: float
    delay_median_days: float
    false_alerts: int
    false_alerts_per_km2_year: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _f1(p: float, r: float) -> float:
    if np.isnan(p) or np.isnan(r) or p + r == 0:
        return 0.0 if (p == 0 or r == 0) else float("nan")
    return 2 * p * r / (p + r)


def _stats(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(np.median(values))


def score_change(truth: ChangeTruth, prediction: ChangePrediction, pixel_area_m2: float,
                 period: tuple[int, int], min_overlap: float = 0.2) -> ChangeScore:
    """Score ``prediction`` against ``truth`` over the monitored ``period`` (epoch days)."""
    shape = truth.change_date.shape
    for name, arr in (("site_labels", truth.site_labels), ("confirmed", prediction.confirmed),
                      ("change_date", prediction.change_date),
                      ("confirmation_date", prediction.confirmation_date)):
        if arr.shape != shape:
            raise ScoringError(f"{name} has shape {arr.shape}, truth has {shape}",
                               "resample the prediction onto the truth grid first")
    start, end = period
    if end <= start:
        raise ScoringError(f"monitored period {period} is empty", "give (start, end) days")
    if pixel_area_m2 <= 0:
        raise ScoringError(f"pixel area {pixel_area_m2} m2 is not positive",
                           "give the grid's pixel area, e.g. 100 for 10 m pixels")

    tdate = truth.change_date.astype(np.int64)
    changed = tdate > 0
    positive = changed & (tdate >= start) & (tdate <= end)
    dont_care = changed & (tdate < start)
    pred = prediction.confirmed.astype(bool)

    tp_mask = pred & positive
    tp = int(tp_mask.sum())
    fp = int((pred & ~positive & ~dont_care).sum())
    fn = int((positive & ~pred).sum())
    p_prec, p_rec = _ratio(tp, tp + fp), _ratio(tp, tp + fn)

    # Objects: sites with any positive pixel vs. connected components of confirmed pixels.
    site_ids = np.unique(truth.site_labels[positive & (truth.site_labels > 0)])
    components, n_comp = ndimage.label(pred, structure=_EIGHT)
    comp_size = np.bincount(components.ravel(), minlength=n_comp + 1)
    site_size = np.bincount(truth.site_labels.ravel(),
                            minlength=int(truth.site_labels.max()) + 1)
    both = (components > 0) & (truth.site_labels > 0)
    pairs, overlap = np.unique(
        np.stack([components[both], truth.site_labels[both]]), axis=1, return_counts=True)
    site_set = set(site_ids.tolist())
    matched_sites: set[int] = set()
    matched_comps: set[int] = set()
    for (c, s), n in zip(pairs.T.tolist(), overlap.tolist(), strict=True):
        if s in site_set and n >= min_overlap * min(comp_size[c], site_size[s]):
            matched_sites.add(s)
            matched_comps.add(c)
    # Components entirely on don't-care pixels are neither right nor wrong.
    cares = np.bincount(components[~dont_care].ravel(), minlength=n_comp + 1)
    counted = [c for c in range(1, n_comp + 1) if cares[c] > 0 or c in matched_comps]
    n_objects = len(counted)
    false_alerts = sum(1 for c in counted if c not in matched_comps)
    o_prec = _ratio(len(matched_comps), n_objects)
    o_rec = _ratio(len(matched_sites), len(site_ids))

    est = prediction.change_date.astype(np.int64)
    has_est = tp_mask & (est > 0)
    err = np.abs(est[has_est] - tdate[has_est]).astype(np.float64)
    conf = prediction.confirmation_date.astype(np.int64)
    has_conf = tp_mask & (conf > 0)
    delay = (conf[has_conf] - tdate[has_conf]).astype(np.float64)
    err_mean, err_median = _stats(err)
    delay_mean, delay_median = _stats(delay)

    scored_km2 = float((~dont_care).sum()) * pixel_area_m2 / 1e6
    years = (end - start) / 365.25
    return ChangeScore(
        pixel_tp=tp, pixel_fp=fp, pixel_fn=fn,
        pixel_precision=p_prec, pixel_recall=p_rec, pixel_f1=_f1(p_prec, p_rec),
        n_sites=len(site_ids), n_objects=n_objects,
        object_tp_sites=len(matched_sites), object_tp_objects=len(matched_comps),
        object_precision=o_prec, object_recall=o_rec, object_f1=_f1(o_prec, o_rec),
        time_error_mean_days=err_mean, time_error_median_days=err_median,
        delay_mean_days=delay_mean, delay_median_days=delay_median,
        false_alerts=false_alerts,
        false_alerts_per_km2_year=_ratio(false_alerts, scored_km2 * years),
    )
