"""SDG indicator 11.3.1: ratio of land consumption rate to population growth rate.

UN-Habitat's metadata (SDG 11.3.1, 2021 revision)::

    LCR = ln(Urb_t2 / Urb_t1) / y        land consumption rate (per year)
    PGR = ln(Pop_t2 / Pop_t1) / y        population growth rate (per year)
    LCRPGR = LCR / PGR

``Urb`` is the built-up area of the city, ``Pop`` its population, ``y`` the years between
t1 and t2. A ratio above 1 means land is consumed faster than the population grows
(sprawl); below 1, densification. Undefined when the population does not change
(PGR = 0), and misleading when it shrinks (PGR < 0): both are reported with a note.

How the built-up area series is made here (method and its limits):
- ``Urb_t1`` is an external baseline (``cities[].built_up_km2``: year -> km2, e.g. from
  the GHSL built-up surface), as the monitor only sees *change* from its start;
- ``Urb_t`` = baseline + area of the confirmed alerts whose estimated time of change
  (else confirmation date) falls after the baseline date and on or before t.
- Limits: demolition and loss of built-up land are not subtracted (alerts record new
  construction); alert polygons are pixel-exact on a 10 m grid, so sites smaller than the
  minimum mapping unit are missed and edges are +/- half a pixel; the baseline and the
  alerts come from different sensors and definitions of "built-up", so the ratio is an
  estimate to compare cities and years with one method, not an official statistic.
- Population between census years is interpolated geometrically (constant growth rate);
  outside the known years it is extrapolated from the nearest two and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from monitor.errors import UrbanMonitorError


def year_fraction(day: date) -> float:
    """A date as a decimal year (2020-07-02 -> ~2020.5)."""
    start = date(day.year, 1, 1)
    length = (date(day.year + 1, 1, 1) - start).days
    return day.year + (day - start).days / length


def land_consumption_rate(urb_t1: float, urb_t2: float, years: float) -> float:
    _check_positive("built-up area", urb_t1, urb_t2, years)
    return math.log(urb_t2 / urb_t1) / years


def population_growth_rate(pop_t1: float, pop_t2: float, years: float) -> float:
    _check_positive("population", pop_t1, pop_t2, years)
    return math.log(pop_t2 / pop_t1) / years


def _check_positive(what: str, a: float, b: float, years: float) -> None:
    if a <= 0 or b <= 0:
        raise UrbanMonitorError(f"{what} must be positive at both dates (got {a} and {b})",
                                f"check the city's {what} figures")
    if years <= 0:
        raise UrbanMonitorError(f"the period must be positive (got {years} years)",
                                "give t2 after t1")


def population_at(population: Mapping[int, float], when: float) -> tuple[float, bool] | None:
    """Population at decimal year ``when`` and whether it was extrapolated; None if fewer
    than one known year (or only one and ``when`` is not that year)."""
    known = sorted((float(y), float(p)) for y, p in population.items() if p > 0)
    if not known:
        return None
    for year, pop in known:
        if abs(year - when) < 1e-9:
            return pop, False
    if len(known) == 1:
        return None
    below = [k for k in known if k[0] < when]
    above = [k for k in known if k[0] > when]
    if below and above:
        (y1, p1), (y2, p2), extrapolated = below[-1], above[0], False
    elif below:
        (y1, p1), (y2, p2), extrapolated = below[-2], below[-1], True
    else:
        (y1, p1), (y2, p2), extrapolated = above[0], above[1], True
    rate = math.log(p2 / p1) / (y2 - y1)
    return p1 * math.exp(rate * (when - y1)), extrapolated


def built_up_series(baseline_m2: float | None, baseline_date: date,
                    additions: Iterable[tuple[date, float]]) -> list[dict[str, object]]:
    """Cumulative built-up area at each date with new confirmed change after the baseline.

    Returns ``[{"date", "added_m2", "cumulative_added_m2", "built_up_m2"}]`` starting with
    the baseline itself; ``built_up_m2`` is None when there is no baseline.
    """
    per_day: dict[date, float] = {}
    for day, area in additions:
        if day > baseline_date:
            per_day[day] = per_day.get(day, 0.0) + float(area)
    series: list[dict[str, object]] = [{
        "date": baseline_date.isoformat(), "added_m2": 0.0, "cumulative_added_m2": 0.0,
        "built_up_m2": baseline_m2}]
    total = 0.0
    for day in sorted(per_day):
        total += per_day[day]
        series.append({"date": day.isoformat(), "added_m2": round(per_day[day], 2),
                       "cumulative_added_m2": round(total, 2),
                       "built_up_m2": None if baseline_m2 is None else round(baseline_m2 + total, 2)})
    return series


@dataclass(frozen=True)
class SdgIndicator:
    t1: str
    t2: str
    years: float
    urb_t1_m2: float
    urb_t2_m2: float
    pop_t1: float
    pop_t2: float
    population_extrapolated: bool
    lcr: float
    pgr: float
    ratio: float | None
    note: str


def sdg_11_3_1(urb_t1: float, urb_t2: float, pop_t1: float, pop_t2: float, t1: date,
               t2: date, *, population_extrapolated: bool = False) -> SdgIndicator:
    years = year_fraction(t2) - year_fraction(t1)
    lcr = land_consumption_rate(urb_t1, urb_t2, years)
    pgr = population_growth_rate(pop_t1, pop_t2, years)
    if abs(pgr) < 1e-12:
        ratio, note = None, "population did not change: the ratio is undefined"
    elif pgr < 0:
        ratio, note = lcr / pgr, "population shrank: a negative ratio is not comparable"
    else:
        ratio = lcr / pgr
        note = "land is consumed faster than the population grows" if ratio > 1 else \
            "the population grows faster than land is consumed (densification)"
    return SdgIndicator(t1=t1.isoformat(), t2=t2.isoformat(), years=round(years, 4),
                        urb_t1_m2=urb_t1, urb_t2_m2=urb_t2, pop_t1=round(pop_t1),
                        pop_t2=round(pop_t2), population_extrapolated=population_extrapolated,
                        lcr=lcr, pgr=pgr, ratio=ratio, note=note)
