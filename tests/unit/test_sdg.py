"""SDG 11.3.1: LCR, PGR, their ratio, population interpolation, built-up series."""

from __future__ import annotations

import math
from datetime import date

import pytest

from monitor.domain.sdg import (
    built_up_series,
    land_consumption_rate,
    population_at,
    sdg_11_3_1,
    year_fraction,
)
from monitor.errors import UrbanMonitorError


def test_rates_and_ratio_follow_the_un_formula() -> None:
    # Built-up grows 10 -> 12 km2 and population 1.0 -> 1.1 M over exactly 5 years.
    ind = sdg_11_3_1(10e6, 12e6, 1_000_000, 1_100_000, date(2015, 1, 1), date(2020, 1, 1))
    assert ind.years == pytest.approx(5.0)
    assert ind.lcr == pytest.approx(math.log(1.2) / 5)
    assert ind.pgr == pytest.approx(math.log(1.1) / 5)
    assert ind.ratio == pytest.approx(math.log(1.2) / math.log(1.1))   # ~1.913: sprawl
    assert "faster" in ind.note
    flat = sdg_11_3_1(10e6, 12e6, 1e6, 1e6, date(2015, 1, 1), date(2020, 1, 1))
    assert flat.ratio is None and "undefined" in flat.note
    with pytest.raises(UrbanMonitorError, match="positive"):
        land_consumption_rate(0, 1, 1)


def test_population_interpolation_is_geometric_and_extrapolation_flagged() -> None:
    pop = {2015: 1_000_000, 2020: 1_210_000}
    assert population_at(pop, 2015) == (1_000_000, False)
    mid, extrapolated = population_at(pop, 2017.5)  # type: ignore[misc]
    assert mid == pytest.approx(1_100_000) and not extrapolated
    later, extrapolated = population_at(pop, 2025)  # type: ignore[misc]
    assert later == pytest.approx(1_464_100) and extrapolated
    assert population_at({2015: 5.0}, 2016) is None
    assert year_fraction(date(2021, 1, 1)) == 2021.0


def test_built_up_series_adds_confirmed_area_after_the_baseline() -> None:
    series = built_up_series(1_000_000.0, date(2020, 1, 1), [
        (date(2019, 6, 1), 500.0),       # before the baseline: already in it
        (date(2021, 3, 1), 2_000.0), (date(2021, 3, 1), 1_000.0), (date(2022, 5, 5), 4_000.0)])
    assert [s["date"] for s in series] == ["2020-01-01", "2021-03-01", "2022-05-05"]
    assert [s["built_up_m2"] for s in series] == [1_000_000.0, 1_003_000.0, 1_007_000.0]
    no_base = built_up_series(None, date(2020, 1, 1), [(date(2021, 1, 1), 10.0)])
    assert no_base[-1]["built_up_m2"] is None and no_base[-1]["cumulative_added_m2"] == 10.0
