"""A city at a glance for people: built-up area and newly confirmed area per month from
the city's real start, and SDG 11.3.1 with every input it used. The live dashboard
(``/cities/{id}/overview``) and the demo report call the same :func:`city_overview`, so
both show the same numbers.

Why not ``monitor.pipeline.city_stats`` alone: its series starts at the configured
baseline year or, without one, at the state's day epoch (2014-01-01), and it adds every
confirmed alert by change date, so a city whose monitoring began in 2019 shows five empty
years, and sites whose estimated change falls inside the baseline period (the weeks the
references are built, when nothing may alert) pile up as a jump right after the start.
Here:

- the timeline starts at the city's first applied scene (the state's first stream day);
- t1 of SDG 11.3.1 is the end of the baseline period, t2 the state's latest day;
- the built-up area follows confirmed sites whose change date is after t1; sites whose
  estimated change falls before t1 are counted apart ("in the baseline") and not added:
  the baseline built-up area already holds them;
- Urb_t1 is the configured ``built_up_km2`` of t1's year when there is one; else it is
  estimated from the city's S2 reference (:func:`builtup_estimate_m2`, an index rule, at
  the state's latest day = t2) minus the confirmed construction after t1.

Pure: numpy and the domain modules, no IO.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np

from monitor.domain.records import StoredAlert
from monitor.domain.sdg import population_at, sdg_11_3_1, year_fraction
from monitor.domain.vocabulary import ALERT_STATUSES, day_to_date
from monitor.errors import UrbanMonitorError


class StateView(Protocol):
    """What this module reads from ``monitor.domain.state.CityState`` (all optional)."""

    grid: Any


def builtup_estimate_m2(state: Any) -> float | None:
    """Built-up area from the S2 reference (index rule, an estimate): NDVI < 0.25, NDBI >
    -0.05 (SWIR1 brighter than NIR) and not water (MNDWI < 0). The reference follows
    stable pixels, so this is the built-up area as of the state's latest S2 scene."""
    reference_for = getattr(state, "reference_for", None)
    ref = reference_for("s2") if reference_for is not None else None
    if ref is None:
        return None
    values, valid = ref
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 3 or values.shape[0] < 6:
        return None
    _, green, red, nir, swir16, _ = (values[i] for i in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
        ndbi = (swir16 - nir) / (swir16 + nir)
        mndwi = (green - swir16) / (green + swir16)
    built = np.asarray(valid, bool) & (ndvi < 0.25) & (ndbi > -0.05) & (mndwi < 0)
    return float(built.sum()) * float(state.grid.pixel_size) ** 2


def _stream_days(state: Any, name: str) -> list[int]:
    days = getattr(state, name, None) or {}
    return [int(v) for v in days.values() if int(v) > 0]


def state_period(state: Any) -> tuple[date | None, date | None, date | None]:
    """(start, baseline end, latest day) of a city state: its first applied scene, the
    first day after the baseline period of its first stream, its latest applied scene."""
    if state is None:
        return None, None, None
    firsts = _stream_days(state, "first_stream_day")
    lasts = _stream_days(state, "last_day")
    start = day_to_date(min(firsts)) if firsts else None
    baseline_days = int(getattr(getattr(state, "params", None), "baseline_days", 0) or 0)
    baseline_end = start + timedelta(days=baseline_days) if start else None
    latest = day_to_date(max(lasts)) if lasts else None
    return start, baseline_end, latest


def _month(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def monthly_series(alerts: Sequence[StoredAlert], start: date, end: date,
                   urb_t1_m2: float | None, t1: date) -> list[dict[str, Any]]:
    """One row per month from ``start``'s month to ``end``'s: sites and area newly
    confirmed that month (by confirmation date), and the built-up area at the month's end
    (``urb_t1_m2`` plus confirmed sites whose change date is after ``t1`` and on or before
    the month's end; None without a baseline)."""
    confirmed = [a for a in alerts if a.status == "confirmed"]
    rows: list[dict[str, Any]] = []
    month = _month(start)
    last = _month(max(end, start))
    while month <= last:
        following = _next_month(month)
        new = [a for a in confirmed
               if a.confirmed is not None and month <= a.confirmed < following]
        added = sum(a.area_m2 for a in confirmed
                    if (a.change_date or a.confirmed or a.first_detected) is not None
                    and t1 < (a.change_date or a.confirmed or a.first_detected) < following)
        rows.append({
            "month": month.isoformat()[:7],
            "new_confirmed_sites": len(new),
            "new_confirmed_m2": round(sum(a.area_m2 for a in new), 1),
            "built_up_m2": None if urb_t1_m2 is None else round(urb_t1_m2 + added, 1),
        })
        month = following
    return rows


def city_overview(*, alerts: Sequence[StoredAlert], population: Mapping[int, float],
                  built_up_km2: Mapping[int, float] | None = None,
                  start: date | None = None, baseline_end: date | None = None,
                  latest: date | None = None,
                  built_up_latest_m2: float | None = None) -> dict[str, Any]:
    """The overview of one city (JSON-ready): period, counts, monthly series, SDG 11.3.1
    with its inputs. ``start``/``baseline_end``/``latest`` come from the state
    (:func:`state_period`); without a state they fall back to the alerts' dates."""
    days = [d for a in alerts for d in (a.first_detected, a.change_date, a.confirmed,
                                        a.retracted) if d is not None]
    if start is None:
        start = min(days) if days else None
    if latest is None:
        latest = max(days) if days else start
    if baseline_end is None:
        baseline_end = start
    counts = {s: 0 for s in ALERT_STATUSES}
    for a in alerts:
        counts[a.status] = counts.get(a.status, 0) + 1
    confirmed = [a for a in alerts if a.status == "confirmed"]
    out: dict[str, Any] = {
        "start": start.isoformat() if start else None,
        "baseline_end": baseline_end.isoformat() if baseline_end else None,
        "latest": latest.isoformat() if latest else None,
        "alerts": counts,
        "confirmed_area_m2": round(sum(a.area_m2 for a in confirmed), 1),
        "months": [],
        "sdg_11_3_1": {"available": False, "reason": "no scene processed yet"},
    }
    if start is None or latest is None or baseline_end is None:
        return out
    t1, t2 = baseline_end, latest

    def change_of(a: StoredAlert) -> date:
        return a.change_date or a.confirmed or a.first_detected

    after = [a for a in confirmed if t1 < change_of(a) <= t2]
    in_baseline = [a for a in confirmed if change_of(a) <= t1]
    added_m2 = sum(a.area_m2 for a in after)
    configured = dict(built_up_km2 or {})
    urb_t1: float | None = None
    source = None
    if t1.year in configured:
        urb_t1 = configured[t1.year] * 1e6
        source = f"configured built_up_km2 for {t1.year}"
    elif built_up_latest_m2 is not None and built_up_latest_m2 - added_m2 > 0:
        urb_t1 = built_up_latest_m2 - added_m2
        source = (f"S2 reference index rule at {t2.isoformat()} "
                  f"({built_up_latest_m2 / 1e6:.3f} km2) minus confirmed construction after t1")
    out["months"] = monthly_series(alerts, start, latest, urb_t1, t1)
    out["baseline_sites"] = {"sites": len(in_baseline),
                             "area_m2": round(sum(a.area_m2 for a in in_baseline), 1)}
    inputs: dict[str, Any] = {
        "t1": t1.isoformat(), "t2": t2.isoformat(),
        "t1_rule": "end of the baseline period (first scene + baseline days)",
        "t2_rule": "latest scene applied to the city state",
        "urb_t1_m2": None if urb_t1 is None else round(urb_t1, 1),
        "urb_t1_source": source,
        "added_m2": round(added_m2, 1), "added_sites": len(after),
        "urb_t2_m2": None if urb_t1 is None else round(urb_t1 + added_m2, 1),
        "population": {str(k): v for k, v in sorted(population.items())},
    }
    sdg: dict[str, Any] = {"available": False, "inputs": inputs}
    pop1 = population_at(population, year_fraction(t1))
    pop2 = population_at(population, year_fraction(t2))
    if urb_t1 is None:
        sdg["reason"] = ("no built-up area at t1: configure built_up_km2 for the city, or "
                         "wait for the S2 reference")
    elif t2 <= t1:
        sdg["reason"] = "the baseline period is not over yet"
    elif pop1 is None or pop2 is None:
        sdg["reason"] = "population unknown: give at least two years in the city's population"
    else:
        inputs.update(pop_t1=round(pop1[0]), pop_t2=round(pop2[0]),
                      population_extrapolated=pop1[1] or pop2[1])
        try:
            indicator = sdg_11_3_1(urb_t1, urb_t1 + added_m2, pop1[0], pop2[0], t1, t2,
                                   population_extrapolated=pop1[1] or pop2[1])
        except UrbanMonitorError as exc:
            sdg["reason"] = str(exc)
        else:
            sdg.update(available=True, **indicator.__dict__)
    out["sdg_11_3_1"] = sdg
    return out
