"""Per-city statistics: alert counts, built-up area over time and SDG 11.3.1.

Shared by the API (``/cities/{id}/stats``) and the demo report, so both say the same.
The method and its limits are in :mod:`monitor.domain.sdg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, Field

from monitor.domain.records import StoredAlert
from monitor.domain.sdg import built_up_series, population_at, sdg_11_3_1, year_fraction
from monitor.domain.vocabulary import ALERT_STATUSES, DAY_EPOCH
from monitor.errors import RequestError, UrbanMonitorError


class CityInfo(BaseModel):
    id: str
    name: str
    country: str = ""
    aoi: dict[str, Any]
    population: dict[int, float] = Field(default_factory=dict)
    built_up_km2: dict[int, float] = Field(default_factory=dict)


def _parse_year_or_date(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if len(text) == 4 and text.isdigit():
            return date(int(text), 1, 1)
        return date.fromisoformat(text)
    except ValueError:
        raise RequestError(name, f"'{text}' is not a year or a date",
                           "give YYYY or YYYY-MM-DD") from None


def city_stats(city: CityInfo, alerts: Sequence[StoredAlert], t1_text: str | None,
               t2_text: str | None) -> dict[str, Any]:
    """Counts, built-up area over time and SDG 11.3.1 for one city (see monitor.domain.sdg)."""
    counts = {s: 0 for s in ALERT_STATUSES}
    for a in alerts:
        counts[a.status] = counts.get(a.status, 0) + 1
    confirmed = [a for a in alerts if a.status == "confirmed"]
    additions = [(a.change_date or a.confirmed or a.first_detected, a.area_m2) for a in confirmed]
    t1 = _parse_year_or_date("t1", t1_text)
    t2 = _parse_year_or_date("t2", t2_text)
    baseline_year = None
    if city.built_up_km2:
        wanted = t1.year if t1 else min(city.built_up_km2)
        if wanted not in city.built_up_km2:
            raise RequestError("t1", f"no baseline built-up area for {wanted}",
                               f"use a year of cities[].built_up_km2: {sorted(city.built_up_km2)}")
        baseline_year = wanted
    # without an external baseline the series starts with the city's own record (its
    # earliest alert), not at the state's internal day epoch
    earliest = min((a.change_date or a.first_detected for a in alerts if a.first_detected),
                   default=None)
    baseline_date = (date(baseline_year, 1, 1) if baseline_year
                     else (t1 or (earliest - timedelta(days=1) if earliest else DAY_EPOCH)))
    baseline_m2 = city.built_up_km2[baseline_year] * 1e6 if baseline_year else None
    # nothing to draw yet: no external baseline, no date asked for and no alert
    no_record = baseline_year is None and t1 is None and earliest is None
    series = [] if no_record else built_up_series(baseline_m2, baseline_date, additions)
    if t2 is None:
        later = [d for d, _ in additions if d > baseline_date]
        t2 = max(later) if later else None
    sdg: dict[str, Any]
    if baseline_m2 is None:
        sdg = {"available": False, "reason": "no baseline built-up area: add "
               "built_up_km2 {year: km2} to the city's configuration"}
    elif t2 is None or t2 <= baseline_date:
        sdg = {"available": False, "reason": "no confirmed change after the baseline yet"}
    else:
        urb_t2 = baseline_m2 + sum(area for d, area in additions if baseline_date < d <= t2)
        pop1 = population_at(city.population, year_fraction(baseline_date))
        pop2 = population_at(city.population, year_fraction(t2))
        if pop1 is None or pop2 is None:
            sdg = {"available": False, "reason": "population unknown: give at least two "
                   "years in the city's population (or api.population_csv)"}
        else:
            try:
                indicator = sdg_11_3_1(baseline_m2, urb_t2, pop1[0], pop2[0], baseline_date, t2,
                                       population_extrapolated=pop1[1] or pop2[1])
                sdg = {"available": True, **indicator.__dict__}
            except UrbanMonitorError as exc:
                sdg = {"available": False, "reason": str(exc)}
    return {
        "city_id": city.id,
        "name": city.name,
        "alerts": counts,
        "confirmed_area_m2": round(sum(a.area_m2 for a in confirmed), 2),
        "baseline": {"year": baseline_year, "built_up_m2": baseline_m2,
                     "source": "cities[].built_up_km2" if baseline_year else None},
        "built_up_series": series,
        "sdg_11_3_1": sdg,
        "method": "built-up area = external baseline + area of confirmed alerts by estimated "
                  "time of change (else confirmation date); LCR = ln(Urb_t2/Urb_t1)/y, "
                  "PGR = ln(Pop_t2/Pop_t1)/y, ratio = LCR/PGR; population interpolated "
                  "geometrically between known years. Demolition is not subtracted; see "
                  "monitor/domain/sdg.py for the limits.",
    }


def clear_view_stats(last_clear_day: Any, as_of: date, windows: Sequence[int] = (30, 90)
                     ) -> dict[str, Any]:
    """How fresh the city's view is: the share of its pixels seen clearly (a clear
    Sentinel-2 observation) within the last ``windows`` days before ``as_of``, the share
    never seen clearly, and the median days since the last clear view. ``last_clear_day``
    is the state's ``last_clear_day`` (uint16 days since 2014-01-01, 0 = never)."""
    import numpy as np

    last = np.asarray(last_clear_day, dtype=np.int32)
    total = int(last.size)
    today = (as_of - DAY_EPOCH).days
    seen = last > 0
    age = today - last
    out: dict[str, Any] = {"as_of": as_of.isoformat(), "pixels": total}
    for days in windows:
        share = float(np.count_nonzero(seen & (age <= days) & (age >= 0)) / total) if total else 0.0
        out[f"seen_clear_{days}d_share"] = round(share, 4)
    out["never_seen_clear_share"] = round(float(np.count_nonzero(~seen) / total), 4) if total else 0.0
    out["median_days_since_clear"] = (float(np.median(age[seen])) if seen.any() else None)
    newest = int(last.max()) if total and seen.any() else 0
    out["last_clear_date"] = ((DAY_EPOCH + timedelta(days=newest)).isoformat() if newest
                              else None)
    return out
